#!/usr/bin/env bash
# Session 11: the kernel benchmark's block rows with the new default (the TMA form), then ncu of both forms.
# Build here: SPARSIFY_CACHE_DIR=.devbuild/c13 python3 -m sparsify_onnx.bench.kernels --patterns block32-wgmma,block64-wgmma --build-only
#             (and AB_BUILD_ONLY=1 python3 bench/cuda/ab.py 4096 3072 768 block32-wgmma 0.1 1 128x64x3x0 128x32x4x1x0x2x1)
# GPU host:   OUT=$OUT CACHE_TAR=.devbuild/c13tar/cache.tar.xz bash bench/cuda/s11/scripts/bench_block.sh  (carry .devbuild/c13tar, .gpu/py)
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1 SPARSIFY_GPU_BACKEND=pycuda
mkdir -p $SPARSIFY_CACHE_DIR && tar -xJf "$CACHE_TAR" -C $SPARSIFY_CACHE_DIR
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD
timeout 400 python3 -m sparsify_onnx.bench.kernels --patterns block32-wgmma,block64-wgmma --json $OUT/bench-block.json > $OUT/bench-block.log 2>&1
echo "bench rc=$?"; tail -45 $OUT/bench-block.log
CASE="4096 3072 768 block32-wgmma 0.1" OUT=$OUT bash bench/cuda/s11/scripts/ncu_sol.sh 128x64x3x0 128x32x4x1x0x2x1
