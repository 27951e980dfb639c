#!/usr/bin/env bash
# Session 18, one device call: block 16x16 at 90% on the Hopper block kernel (cuda_bcsr_wgmma: groups of four
# 16-wide block columns, n64, over the union of their live blocks) against the mma.sync kernel (cuda_bcsr_tc, what
# the benchmark's block16 row runs) and cuBLAS in the same rounds, at the benchmark's four shapes.
# Prebuild (dev machine): BUILD=1 CACHE=.devbuild/s18/c2 bash bench/cuda/s18/b16_run.sh
# GPU host (carry the tar, .gpu/py): CACHE_TAR=.devbuild/s18/c2.tar.xz OUT=$OUT bash bench/cuda/s18/b16_run.sh
set -u
cd "$(dirname "$0")/../../.."
R=${ROUNDS:-3}
D=${DENSITY:-0.1}
SHAPES=${SHAPES:-"4096x768x768 4096x3072x768 4096x768x3072 8192x8192x8192"}
WT=${WTILES:-"128x64x3x0 128x64x3x1 128x32x4x0 64x64x3x0 256x64x4x0"}
if [ "${BUILD:-0}" = 1 ]; then
  export SPARSIFY_CACHE_DIR=$(realpath $CACHE) AB_BUILD_ONLY=1
  for s in $SHAPES; do
    .venv/bin/python bench/cuda/ab.py ${s//x/ } block16 $D 1 auto
    .venv/bin/python bench/cuda/ab.py ${s//x/ } block16-wgmma $D 1 $WT
  done
  tar -cJf $CACHE.tar.xz -C $CACHE .
  exit 0
fi
. bench/cuda/s17/host.sh
for s in $SHAPES; do
  for p in "block16 auto" "block16-wgmma $WT"; do
    set -- $p
    echo "== $s $1"
    timeout -k 5 150 python3 bench/cuda/ab.py ${s//x/ } $1 $D $R ${@:2} 2>&1 | grep -v Warning | tail -8 | tee -a $OUT/ab.txt
  done
done
