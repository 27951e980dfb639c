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
  .venv/bin/python bench/cuda/s17/test_libs.py  # the GPU tests' libraries
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
SPARSIFY_GPU_BACKEND=pycuda timeout 250 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py \
  -k "fused_activation or bgr or ta" > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
for r in "${RUNS[@]}"; do
  set -- $r
  AB_EPI=$1 timeout -k 5 90 python3 bench/cuda/ab.py $2 $3 $4 $P 0.1 $R ${@:5} 2>&1 | grep -v Warning | tee -a $OUT/ab.txt
  (cd $OLD && AB_EPI=$1 PYTHONPATH=/tmp/site:$PWD timeout -k 5 90 python3 bench/cuda/ab.py $2 $3 $4 $P 0.1 $R ${@:5}) 2>&1 \
    | grep -v Warning | sed 's/^/old /' | tee -a $OUT/ab.txt
done
