#!/usr/bin/env bash
# Session 18, one device call: the block kernels' GPU tests and memcheck of the 16-row TMA cases in wider block
# columns (16x32 with Y by TMA, 16x64), on the final code.
# Prebuild (dev machine): SPARSIFY_CACHE_DIR=.devbuild/s18/c7 python bench/cuda/s17/test_libs.py; tar -cJf .devbuild/s18/c7.tar.xz -C .devbuild/s18/c7 .
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c7.tar.xz OUT=$OUT bash bench/cuda/s18/final_tests.sh
set -u
cd "$(dirname "$0")/../../.."
. bench/cuda/s17/host.sh
SPARSIFY_GPU_BACKEND=pycuda timeout 300 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py \
  > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
SPARSIFY_GPU_BACKEND=pycuda timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -m gpu \
  -q tests/test_cuda_kernels.py -k "bcsr_wgmma and (block16x32 or block16x64)" > $OUT/memcheck.log 2>&1
echo "memcheck rc=$?"; tail -2 $OUT/memcheck.log
