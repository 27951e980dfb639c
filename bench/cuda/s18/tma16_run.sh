#!/usr/bin/env bash
# Session 18, one device call: the TMA form of the block kernel for 16-row blocks (two per k-step, X in two boxes
# of 16 k with 32-byte swizzle), block 16x16 at 90% at the benchmark's four shapes against the plain form (fours
# grouped) and cuBLAS in the same rounds; block 32x32's TMA tiles at three shapes to check the producer's rewrite
# (a table read per step) costs nothing; first the block kernels' GPU tests and memcheck of the new TMA cases.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c5 bash bench/cuda/s18/tma16_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c5.tar.xz OUT=$OUT bash bench/cuda/s18/tma16_run.sh
set -u
cd "$(dirname "$0")/../../.."
T16="128x64x3x0 128x32x4x1x0x2x1 128x32x4x0x0x2x3 128x32x3x1x0x2x2 256x32x4x1x0x2x2 64x32x4x0x0x0x1"
RUNS=("4096 768 768 block16-wgmma $T16" "4096 3072 768 block16-wgmma $T16" "4096 768 3072 block16-wgmma $T16"
      "8192 8192 8192 block16-wgmma 128x32x4x0 128x32x4x1x0x2x1 256x32x4x1x0x2x2"
      "4096 3072 768 block32-wgmma 128x32x4x0x0x2x3 128x32x4x1x0x2x1"
      "4096 768 3072 block32-wgmma 128x32x4x1x0x2x1" "8192 8192 8192 block32-wgmma 256x32x4x1x0x2x2")
. bench/cuda/s18/runs.sh
[ "${BUILD:-0}" = 1 ] && { TEST_LIBS=1 runs_build; exit 0; }
. bench/cuda/s17/host.sh
[ "${SKIP_TESTS:-0}" != 1 ] && runs_tests "bcsr" "bcsr_wgmma and (block16x16 or block32x16)"
runs_ab 9
