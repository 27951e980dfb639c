#!/usr/bin/env bash
# Session 18, one device call: the block kernel's TMA form storing Y by TMA from staging tiles (LH 8) against its
# 16-byte stores (LH 2), block 32x32 and 64x64 at 90% at the benchmark's shapes, cuBLAS in the same rounds; first
# the block kernels' GPU tests and memcheck of the new cases.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c6 bash bench/cuda/s18/ys_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c6.tar.xz OUT=$OUT bash bench/cuda/s18/ys_run.sh
set -u
cd "$(dirname "$0")/../../.."
R=${ROUNDS:-3}
RUNS=("4096 3072 768 block32-wgmma 128x32x4x0x0x2x3 128x32x4x0x0x10x3 128x32x4x1x0x2x1 128x32x4x1x0x10x1"
      "4096 768 768 block32-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1 128x32x4x0x0x2x3 128x32x4x0x0x10x3"
      "4096 768 3072 block32-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1"
      "8192 8192 8192 block32-wgmma 256x32x4x1x0x2x2 256x32x4x1x0x10x2"
      "4096 3072 768 block64-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1 128x32x4x0x0x2x3 128x32x4x0x0x10x3")
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for r in "${RUNS[@]}"; do
    set -- $r
    .venv/bin/python bench/cuda/ab.py $1 $2 $3 $4 0.1 1 ${@:5}
  done
  .venv/bin/python bench/cuda/s17/test_libs.py
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  SPARSIFY_GPU_BACKEND=pycuda timeout 200 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py -k "bcsr" \
    > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
  SPARSIFY_GPU_BACKEND=pycuda timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu \
    -q tests/test_cuda_kernels.py -k "bcsr_wgmma and (k768n968-br or k520n1024-plain or k1024n200-br)" \
    > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
fi
for r in "${RUNS[@]}"; do
  set -- $r
  echo "== $1 $2 $3 $4"
  timeout -k 5 150 python3 bench/cuda/ab.py $1 $2 $3 $4 0.1 $R ${@:5} 2>&1 | grep -v Warning | tail -7 | tee -a $OUT/ab.txt
done
