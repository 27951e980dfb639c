#!/usr/bin/env bash
# One device call: GPU tests of the n:m family (pycuda), then the 2:4 rows of the kernel benchmark at the four
# shapes, kernels precompiled on the dev machine into .devbuild/cache4 (carried).
cd "$(dirname "$0")/../.."
export SPARSIFY_CACHE_DIR=/tmp/spcache PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp/out}
mkdir -p $SPARSIFY_CACHE_DIR $OUT && cp -r .devbuild/cache4/. $SPARSIFY_CACHE_DIR/
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/py/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
SPARSIFY_GPU_BACKEND=pycuda SPARSIFY_DEBUG=1 timeout 120 python3 -m pytest -m gpu -q -rs tests/test_cuda_kernels.py -k "nm" 2>&1 | tee $OUT/tests_nm.log | tail -4
SPARSIFY_DEBUG=1 timeout 300 python3 -m sparsify_onnx.bench.kernels --patterns 2:4 --json $OUT/bench_2to4.json > $OUT/bench_2to4.log 2>&1
echo "bench rc=$?"; grep -E "^\| [0-9]" $OUT/bench_2to4.log | tail -4; grep "algorithm id" $OUT/bench_2to4.log | tail -4
