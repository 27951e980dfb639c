#!/usr/bin/env bash
# ncu stall reasons (average warps stalled per issued instruction, by reason), instructions executed and duration
# for tiles of one benchmark kernel:
# CASE="M N K pattern density" CACHE=.devbuild/cNtar [CACHE_TAR=.devbuild/cNtar/cache.tar.xz] bash bench/cuda/ncu_reasons.sh TILE [TILE ...]
# (GPU host; carry CACHE and .gpu/py)
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
set -u
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && cp -r "$CACHE"/. $SPARSIFY_CACHE_DIR/
[ -n "${CACHE_TAR:-}" ] && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
R=""
for r in barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle membar sleeping dispatch_stall no_instruction branch_resolving selected not_selected drain imc_miss tex_throttle misc; do
  R="$R,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
done
for t in "$@"; do
  timeout 120 ncu --kernel-name kernel -c 1 --metrics ${R#,},smsp__inst_executed.sum,gpu__time_duration.sum,sm__cycles_elapsed.avg python3 bench/cuda/one.py $CASE $t > $OUT/ncu-reasons-$t.txt 2>&1
  echo "== $t"; grep -E "smsp__|gpu__|sm__" $OUT/ncu-reasons-$t.txt | awk '{print $1, $NF}'
done
