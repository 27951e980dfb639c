#!/usr/bin/env bash
# On the GPU host, after .gpu/install.sh: verify and time prebuilt engines on the CUDA EP, then the GPU tests.
# Engines are converted on the dev machine with:
#   sparsify-onnx convert M.onnx models/specs/bert_block80.yaml -o .devbuild/e2e/engXX --device cuda \
#       --cpu-arch x86-64-v3 --no-verify --no-bench --policy always --input-shape input_ids=32x128 ...
set -u
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
S="input_ids=32x128 attention_mask=32x128"
for e in "$@"; do
  echo "=== $e"
  python3 -m sparsify_onnx verify "$e" --provider cuda
  python3 bench/gpu/placement.py "$e" $S
  python3 -m sparsify_onnx bench "$e" --repeat 200 --warmup 20 --json "$OUT/$(basename $e)-bench.json"
done
