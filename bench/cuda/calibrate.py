"""The CUDA cost model against a kernel-benchmark JSON: predicted vs measured time per case, and how often the
model's sparse-or-dense decision agrees with the measured one.
usage: python bench/cuda/calibrate.py bench/cuda/h200-2026-11-30-s2-full.json"""
import json
import sys
import zlib

from sparsify_onnx.bench.kernels import _weight, make_pattern
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, get_family
from sparsify_onnx.transform.cost import dense_cost

agree = total = 0
for r in json.load(open(sys.argv[1]))["results"]:
    if "ours_us" not in r:
        continue
    pat, fam = make_pattern(r["pattern"]), get_family(r["family"])
    seed = zlib.crc32(f"{r['N']},{r['K']},{r['pattern'].removesuffix('-wgmma')},{r['density']}".encode()) % 100000  # as bench.kernels
    W, pk = _weight(r["pattern"], r["K"], r["N"], r["density"], seed)
    spec = KernelSpec("linear", fam.name, "cuda", "fp16", pat, r["K"], r["N"], Epilogue(), tile=tuple(r["tile"]),
                      arch=("sm_90",), tables_hash=pk.tables_hash())
    model = fam.cost(spec, pk, r["M"]) * 1e6
    dmodel = dense_cost("cuda", r["M"], r["K"], r["N"], "fp16") * 1e6
    meas_sparse, model_sparse = r["ours_us"] < r["cublas_us"], model < dmodel
    total += 1
    agree += meas_sparse == model_sparse
    print(f"{r['M']},{r['N']},{r['K']} {r['pattern']:12s} {r['density']:.2f}  measured {r['ours_us']:8.1f} us  "
          f"model {model:8.1f} us ({r['ours_us'] / model:4.2f}x)  cuBLAS {r['cublas_us']:7.1f} model {dmodel:7.1f}  "
          f"decision {'sparse' if meas_sparse else 'dense '} / model {'sparse' if model_sparse else 'dense'}")
print(f"{agree}/{total} decisions agree")
