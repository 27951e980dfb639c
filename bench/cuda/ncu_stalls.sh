#!/usr/bin/env bash
# ncu warp-state (stall reasons) and source counters for tiles of a benchmark kernel (default: the wgmma tile-wise
# kernel at 8192^3, 75%; CASE="M N K pattern density" picks another):
# CACHE=.devbuild/cacheN bash bench/cuda/ncu_stalls.sh TILE [TILE ...]   (GPU host; carry CACHE and .gpu/py)
set -u
cd "$(dirname "$0")/../.."
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
for t in "$@"; do
  timeout 200 ncu --kernel-name kernel -c 1 --section SpeedOfLight --section WarpStateStats --section SourceCounters \
    --section SchedulerStats python3 bench/cuda/one.py ${CASE:-8192 8192 8192 tile-wgmma 0.25} $t > $OUT/ncu-stalls-$t.txt 2>&1
  echo "== ${CASE:-} $t rc=$?"; grep -E "Duration|Stall|stall|Warp Cycles|Issued Warp|Executed Ipc" $OUT/ncu-stalls-$t.txt | head -30
done
