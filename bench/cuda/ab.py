"""Alternating A/B timing of a few kernel tiles against cuBLAS on one shape, to tell a speedup from run-to-run noise:
each round times cuBLAS, then every tile (CUDA-graph replay, median of trials, as bench.kernels), and the table
gives the median over rounds. Kernels come from the compile cache (build them with bench.kernels --build-only).
usage: python3 bench/cuda/ab.py M N K pattern density ROUNDS tile [tile ...]   (tile as 128x64x3x0; 'auto' = default)
AB_BUILD_ONLY=1: only compile the kernels into $SPARSIFY_CACHE_DIR (on the dev machine, no GPU or torch needed).
AB_EPI=bg (b bias, r/g/t relu/gelu/gelu_tanh, a residual add): kernels with that fused epilogue, against cuBLAS
followed by the same element-wise ops in torch (what the dense model runs unfused), and the GEMM alone.
AB_WEIGHT=w.npy: that [K, N] weight (e.g. bench/cuda/s17/minilm_weights.py's) instead of the pattern's random one."""
import os
import statistics
import sys

import numpy as np

from sparsify_onnx.bench.kernels import plan_cases, render_case
from sparsify_onnx.codegen.registry import Epilogue
from sparsify_onnx.tune.build import CudaLib, build_shared

M, N, K = (int(x) for x in sys.argv[1:4])
pattern, density, rounds = sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
tiles = [() if t == "auto" else tuple(int(x) for x in t.split("x")) for t in sys.argv[7:]]
case = [c for c in plan_cases([(M, N, K)], [pattern], [density]) if "skip" not in c][0]
EPI = os.environ.get("AB_EPI", "")
ACT = next((a for c, a in (("r", "relu"), ("g", "gelu"), ("t", "gelu_tanh")) if c in EPI), "none")
case["epilogue"] = Epilogue(bias="b" in EPI, activation=ACT, residual="a" in EPI)
if os.environ.get("AB_WEIGHT"):
    case["W"] = np.load(os.environ["AB_WEIGHT"]).astype(np.float16)
    assert case["W"].shape == (K, N), case["W"].shape
if os.environ.get("AB_BUILD_ONLY") == "1":
    for t in tiles:
        print("x".join(map(str, t)) or "auto", build_shared(render_case(dict(case, tile=t))[3]))
    sys.exit(0)

import torch  # noqa: E402

from sparsify_onnx.tune.device import TorchDevice  # noqa: E402

dev = TorchDevice()
X = torch.randn((M, K), device="cuda", dtype=torch.float16)
B = torch.randn((N,), device="cuda", dtype=torch.float16) if "b" in EPI else None
R = torch.randn((M, N), device="cuda", dtype=torch.float16) if "a" in EPI else None


def epilogue(Y):
    """The element-wise ops after the GEMM, as the dense model runs them (each its own pass)."""
    if B is not None:
        Y = Y + B
    if ACT != "none":
        Y = torch.relu(Y) if ACT == "relu" else torch.nn.functional.gelu(
            Y, approximate="tanh" if ACT == "gelu_tanh" else "none")
    return Y + R if R is not None else Y


calls, Wd = {}, None
for t in tiles:
    W, pk, spec, srcs = render_case(dict(case, tile=t))
    lib = CudaLib(build_shared(srcs))
    name = spec.procedural_name()
    fn = lib.launcher(name)
    V = torch.from_numpy(np.ascontiguousarray(pk.values)).cuda()
    Y = torch.empty((M, N), device="cuda", dtype=torch.float16)
    sb = lib.scratch(name, M)
    S = torch.empty(max(sb, 1), device="cuda", dtype=torch.uint8)
    Wd = torch.from_numpy(W).cuda()

    def call(fn=fn, V=V, Y=Y, S=S, sb=sb):
        assert fn(X.data_ptr(), V.data_ptr(), None if B is None else B.data_ptr(), None if R is None else R.data_ptr(),
                  Y.data_ptr(), M, torch.cuda.current_stream().cuda_stream, S.data_ptr(), sb) == 0
    call()
    torch.cuda.synchronize()
    ref = epilogue(X.float() @ Wd.float())
    err = (torch.linalg.norm(Y.float() - ref) / torch.linalg.norm(ref)).item()
    print(f"{'x'.join(map(str, t)) or 'auto'}: relative error {err:.1e}", flush=True)
    assert err < 1e-2, (t, err)
    calls["x".join(map(str, t)) or "auto"] = call
times = {"cublas": []} | ({"cublas+epilogue": []} if EPI else {}) | {k: [] for k in calls}
for r in range(rounds):
    times["cublas"].append(dev.time(lambda: torch.matmul(X, Wd), 20) * 1e6)
    if EPI:
        times["cublas+epilogue"].append(dev.time(lambda: epilogue(torch.matmul(X, Wd)), 20) * 1e6)
    for k, c in calls.items():
        times[k].append(dev.time(c, 20) * 1e6)
        if not getattr(dev, "graphed", True):
            print(f"  ({k}: CUDA-graph capture failed, timed with events around a loop of launches)", flush=True)
    print(f"round {r}: " + "  ".join(f"{k} {v[-1]:.1f}" for k, v in times.items()), flush=True)
cb = statistics.median(times["cublas"])
print(f"\nM={M} N={N} K={K} {pattern} density {density} epilogue {EPI or 'none'}, {rounds} rounds, median us (min..max):")
for k, v in times.items():
    med = statistics.median(v)
    print(f"  {k:>20}: {med:8.1f} ({min(v):.1f}..{max(v):.1f})  x{cb / med:.2f} vs cuBLAS")
