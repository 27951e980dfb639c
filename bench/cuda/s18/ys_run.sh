#!/usr/bin/env bash
# Session 18, one device call: the block kernel's TMA form storing Y by TMA from staging tiles (LH 8) against its
# 16-byte stores (LH 2), block 32x32 and 64x64 at 90% at the benchmark's shapes, cuBLAS in the same rounds; first
# the block kernels' GPU tests and memcheck of the new cases.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c6 bash bench/cuda/s18/ys_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c6.tar.xz OUT=$OUT bash bench/cuda/s18/ys_run.sh
set -u
cd "$(dirname "$0")/../../.."
RUNS=("4096 3072 768 block32-wgmma 128x32x4x0x0x2x3 128x32x4x0x0x10x3 128x32x4x1x0x2x1 128x32x4x1x0x10x1"
      "4096 768 768 block32-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1 128x32x4x0x0x2x3 128x32x4x0x0x10x3"
      "4096 768 3072 block32-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1"
      "8192 8192 8192 block32-wgmma 256x32x4x1x0x2x2 256x32x4x1x0x10x2"
      "4096 3072 768 block64-wgmma 128x32x4x1x0x2x1 128x32x4x1x0x10x1 128x32x4x0x0x2x3 128x32x4x0x0x10x3")
. bench/cuda/s18/runs.sh
[ "${BUILD:-0}" = 1 ] && { TEST_LIBS=1 runs_build; exit 0; }
. bench/cuda/s17/host.sh
[ "${SKIP_TESTS:-0}" != 1 ] && runs_tests "bcsr" "bcsr_wgmma and (k768n968-br or k520n1024-plain or k1024n200-br)"
runs_ab 7
