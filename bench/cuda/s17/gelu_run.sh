#!/usr/bin/env bash
# Session 17, one device call: the fp16 kernels' GELU without erff/tanhf (cuda_common.cuh.j2). GPU tests of the fused
# activations (per element over every fp16 value in [-16, 16], and every case with GELU), then alternating A/B of the
# cover (K reordered) with and without the activation, this tree against OLD (a checkout with erff; its bench/cuda/ab.py
# and sparsify_onnx/bench/kernels.py as here), each in its own process.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s17/c2 OLD=.devbuild/s17/old bash bench/cuda/s17/gelu_run.sh
# GPU host (carry the tar and .gpu/py): CACHE_TAR=.devbuild/s17/c2.tar.xz OLD=.devbuild/s17/old OUT=$OUT bash bench/cuda/s17/gelu_run.sh
set -u
cd "$(dirname "$0")/../../.."
P=unstructured-korder-wgmma R=${ROUNDS:-3}
RUNS=("bg 4096 1536 384 2x96x64x4x1x0 3x128x64x4x1x0" "b 4096 1536 384 2x96x64x4x1x0 3x128x64x4x1x0"
      "bt 4096 1536 384 2x96x64x4x1x0" "bg 4096 3072 768 4x128x128x3x0x0 3x128x128x3x0x0"
      "b 4096 3072 768 4x128x128x3x0x0 3x128x128x3x0x0")
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for r in "${RUNS[@]}"; do
    set -- $r
    AB_EPI=$1 .venv/bin/python bench/cuda/ab.py $2 $3 $4 $P 0.1 1 ${@:5}
    (cd $OLD && AB_EPI=$1 PYTHONPATH=$PWD ../../../.venv/bin/python bench/cuda/ab.py $2 $3 $4 $P 0.1 1 ${@:5})
  done
  .venv/bin/python - <<'PY'
import sys
sys.path.insert(0, "tests")
from cuda_cases import CASES, build_case
from sparsify_onnx.tune.build import build_shared
print(build_shared([build_case(i)[3][0] for i in range(len(CASES))], name="test_cuda_kernels"))
import numpy as np  # test_fused_activation_per_element's libraries, rendered as the test renders them
from sparsify_onnx.codegen.packing import pack
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, get_family
from sparsify_onnx.pattern import Pattern
for fam in ("cuda_csr", "cuda_nm_wgmma"):
    for act in ("gelu", "gelu_tanh"):
        pat = Pattern("unstructured") if fam == "cuda_csr" else Pattern("nm", n=2, m=4)
        pk = pack(np.eye(256, dtype=np.float32), pat, dtype=np.float16)
        spec = KernelSpec("linear", fam, "cuda", "fp16", pat, 256, 256, Epilogue(False, act, False), arch=("sm_90",),
                          tables_hash=pk.tables_hash())
        print(build_shared(get_family(fam).render(spec, pk), name=f"test_act_{fam}_{act}"))
PY
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1 SPARSIFY_WGMMA=1
mkdir -p $SPARSIFY_CACHE_DIR
tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
SPARSIFY_GPU_BACKEND=pycuda timeout 250 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py \
  -k "fused_activation or bgr or ta" > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
for r in "${RUNS[@]}"; do
  set -- $r
  AB_EPI=$1 timeout -k 5 90 python3 bench/cuda/ab.py $2 $3 $4 $P 0.1 $R ${@:5} 2>&1 | grep -v Warning | tee -a $OUT/ab.txt
  (cd $OLD && AB_EPI=$1 PYTHONPATH=/tmp/site:$PWD timeout -k 5 90 python3 bench/cuda/ab.py $2 $3 $4 $P 0.1 $R ${@:5}) 2>&1 \
    | grep -v Warning | sed 's/^/old /' | tee -a $OUT/ab.txt
done
