#!/usr/bin/env bash
# On the GPU host after .gpu/install.sh (ORT staged): convert MODEL with SPEC for CUDA, tuned on the GPU, the report
# timed under onnxruntime's CUDA graphs against the pruned dense model in the same run, batch 32 x 128.
# usage: OUT=... bash bench/gpu/e2e_model.sh MODEL.onnx SPEC.yaml NAME
export PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include SPARSIFY_CACHE_DIR=/tmp/spc PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
S="--input-shape input_ids=32x128 --input-shape attention_mask=32x128"
timeout ${CONVERT_TIMEOUT:-280} python3 -m sparsify_onnx convert $1 $2 -o /tmp/eng-$3 --device cuda --arch sm_90 --cuda-graph $S \
  > $OUT/convert-$3.log 2>&1
echo "$3 rc=$?"; grep "^OK\|^FAILED\|error\|engine  \|pruned dense\|plan:\|LayerNorms write\|not permuted" $OUT/convert-$3.log | head -12
for f in report.md manifest.json; do [ -f /tmp/eng-$3/$f ] && cp /tmp/eng-$3/$f $OUT/$3-$f; done
