#!/usr/bin/env bash
# One device call: the wgmma GPU tests, memcheck on the newest wgmma cases, then alternating A/B timings
# (bench/cuda/ab.py) of the plain form against the 16-byte epilogue (E16) and its combinations.
# Kernels prebuilt on the dev machine into CACHE; carry CACHE and .gpu/py.
# usage: on the dev machine  BUILD=1 CACHE=.devbuild/cache13 bash bench/cuda/ab_run.sh   (compiles the A/B kernels)
#        on the GPU host     CACHE=.devbuild/cache13 bash bench/cuda/ab_run.sh
set -u
cd "$(dirname "$0")/../.."
ab() {  # the A/B sets: M N K pattern density rounds tiles...
  timeout 100 python3 bench/cuda/ab.py 8192 8192 8192 tile-wgmma 0.25 5 128x64x3x0 128x64x3x0x0x0x0x1 \
    128x64x3x0x0x8x0x1 128x64x3x0x0x0x1x1
  timeout 60 python3 bench/cuda/ab.py 8192 8192 8192 tile-wgmma 0.1 3 128x64x3x0 128x64x3x0x0x0x0x1 128x64x3x0x0x0x1x1
  timeout 30 python3 bench/cuda/ab.py 4096 3072 768 tile-wgmma 0.1 5 128x32x4x0 128x32x4x0x0x0x0x1
  timeout 30 python3 bench/cuda/ab.py 4096 3072 768 tile-wgmma 0.25 5 128x64x3x1 128x64x3x1x0x0x0x1
}
if [ "${BUILD:-0}" = 1 ]; then
  SPARSIFY_CACHE_DIR=$CACHE SPARSIFY_EXPERIMENTAL_WGMMA=1 AB_BUILD_ONLY=1 PYTHONPATH=$PWD \
    PATH=$PWD/.venv/bin:$PATH ab
  exit
fi
export SPARSIFY_CACHE_DIR=/tmp/spcache SPARSIFY_EXPERIMENTAL_WGMMA=1 SPARSIFY_GPU_BACKEND=pycuda PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
timeout 90 python3 -m pytest -m gpu -q tests/test_cuda_kernels.py -k wgmma 2>&1 | tail -4 | tee $OUT/tests.log
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu -q -x tests/test_cuda_kernels.py \
  -k "300 and (k264n200 or k520n136 or k1024n200)" > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
ab 2>&1 | grep -v Warn | tee $OUT/ab.log | grep -v "^round"
