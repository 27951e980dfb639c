#!/usr/bin/env bash
# Session 18, one device call: 16-wide block columns grouped in fours by their shared blocks (group_block_columns)
# in the Hopper block kernel, block 16x16 at 90% at the benchmark's four shapes, cuBLAS in the same rounds (the
# kernels before grouping: run2-b16.txt, same weights); block 32x32 at two shapes to check the pairs' epilogue
# (rewritten for members of 16) is as fast as before; first the block kernels' GPU tests and memcheck of the
# grouped 16x16 cases.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c3 bash bench/cuda/s18/group_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c3.tar.xz OUT=$OUT bash bench/cuda/s18/group_run.sh
set -u
cd "$(dirname "$0")/../../.."
T16="128x64x3x0 128x64x3x1 128x32x4x0 256x64x4x0"
RUNS=("4096 768 768 block16-wgmma $T16" "4096 3072 768 block16-wgmma $T16" "4096 768 3072 block16-wgmma $T16"
      "8192 8192 8192 block16-wgmma $T16"
      "4096 3072 768 block32-wgmma 128x32x4x0x0x2x3 128x64x3x0" "4096 768 3072 block32-wgmma 128x32x4x1x0x2x1 128x64x3x0")
. bench/cuda/s18/runs.sh
[ "${BUILD:-0}" = 1 ] && { TEST_LIBS=1 runs_build; exit 0; }
. bench/cuda/s17/host.sh
[ "${SKIP_TESTS:-0}" != 1 ] && runs_tests "bcsr" "bcsr_wgmma and block16x16 and (k768n968 or k520n1024 or k1024n200)"
runs_ab 7
