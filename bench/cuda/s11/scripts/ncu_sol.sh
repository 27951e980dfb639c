#!/usr/bin/env bash
# Session 11: what bounds the block kernel, plain form against TMA form (ncu: time, L2 and DRAM bytes and
# throughput, SM throughput, instructions), one benchmark kernel per tile:
# CASE="M N K pattern density" CACHE_TAR=.devbuild/cNtar/cache.tar.xz bash bench/cuda/s11/scripts/ncu_sol.sh TILE [TILE ...]
# (GPU host; carry the cache's folder and .gpu/py)
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
set -u
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1
mkdir -p $SPARSIFY_CACHE_DIR && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
M="gpu__time_duration.sum,lts__t_bytes.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed"
M="$M,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed"
M="$M,sm__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active"
M="$M,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed"
for t in "$@"; do
  timeout 120 ncu --kernel-name kernel -c 1 --metrics $M python3 bench/cuda/one.py $CASE $t > $OUT/ncu-sol-$t.txt 2>&1
  echo "== $t"; grep -E "__" $OUT/ncu-sol-$t.txt | awk '{print $1, $(NF-1), $NF}'
done
