"""Run one benchmark kernel a few times (for ncu / compute-sanitizer): python3 bench/cuda/one.py M N K pattern density [tile]"""
import sys

import torch

from sparsify_onnx.bench.kernels import plan_cases, render_case
from sparsify_onnx.tune.build import CudaLib, build_shared

M, N, K = (int(x) for x in sys.argv[1:4])
pattern, density = sys.argv[4], float(sys.argv[5])
tile = tuple(int(x) for x in sys.argv[6].split("x")) if len(sys.argv) > 6 else ()
case = [c for c in plan_cases([(M, N, K)], [pattern], [density]) if "skip" not in c][0]
case["tile"] = tile
W, pk, spec, srcs = render_case(case)
lib = CudaLib(build_shared(srcs))
name = spec.procedural_name()
fn = lib.launcher(name)
X = torch.randn((M, K), device="cuda", dtype=torch.float16)
V = torch.from_numpy(pk.values).cuda()
Y = torch.empty((M, N), device="cuda", dtype=torch.float16)
sb = lib.scratch(name, M)
S = torch.empty(max(sb, 1), device="cuda", dtype=torch.uint8)
for _ in range(3):
    assert fn(X.data_ptr(), V.data_ptr(), None, None, Y.data_ptr(), M, torch.cuda.current_stream().cuda_stream,
              S.data_ptr(), sb) == 0
torch.cuda.synchronize()
print(name, "ok")
