"""Check tune() end to end: block 32x32 at 10% on (4096, 3072, 768). `--build` precompiles (no GPU needed)."""
import sys

import numpy as np

from sparsify_onnx.bench.kernels import make_weight
from sparsify_onnx.codegen.packing import pack
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
from sparsify_onnx.pattern import Pattern
from sparsify_onnx.tune import build_candidates, candidates, tune

p = Pattern("block", block=(32, 32))
W = make_weight(p, 768, 3072, 0.1, 5)
pk = pack(W, p, dtype=np.float16)
spec = KernelSpec("linear", "cuda_bcsr_tc", "cuda", "fp16", p, 768, 3072, Epilogue(True, "gelu", False),
                  arch=("sm_90",), tables_hash=pk.tables_hash())
cands = candidates(spec, pk, limit=6)
if "--build" in sys.argv:
    print(build_candidates(cands))
    print(tune(cands, 4096, gpu=False).to_dict())
else:
    c = tune(cands, 4096, use_cache=False)
    print(c.to_dict())
    c2 = tune(cands, 4096)
    print("cached:", c2.reason)
