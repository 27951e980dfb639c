#!/usr/bin/env bash
# Session 18, one device call: block 16x16 at 90% on the Hopper block kernel (cuda_bcsr_wgmma: groups of four
# 16-wide block columns, n64, over the union of their live blocks) against the mma.sync kernel (cuda_bcsr_tc, what
# the benchmark's block16 row runs) and cuBLAS in the same rounds, at the benchmark's four shapes.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c2 bash bench/cuda/s18/b16_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c2.tar.xz OUT=$OUT bash bench/cuda/s18/b16_run.sh
set -u
cd "$(dirname "$0")/../../.."
WT=${WTILES:-"128x64x3x0 128x64x3x1 128x32x4x0 64x64x3x0 256x64x4x0"}
RUNS=()
for s in ${SHAPES:-4096x768x768 4096x3072x768 4096x768x3072 8192x8192x8192}; do
  RUNS+=("${s//x/ } block16 auto" "${s//x/ } block16-wgmma $WT")
done
. bench/cuda/s18/runs.sh
[ "${BUILD:-0}" = 1 ] && { runs_build; exit 0; }
. bench/cuda/s17/host.sh
runs_ab 8
