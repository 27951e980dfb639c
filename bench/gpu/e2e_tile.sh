#!/usr/bin/env bash
# On the GPU host after .gpu/install.sh (ORT staged): BERT-base widths, 4 layers, fp16, every encoder linear
# tile-wise 75% sparse (models/specs/bert_tile75.yaml), batch 32 x 128, converted and tuned on the GPU with the
# default kernels (Hopper wgmma, with their portable fallback), then with the mma.sync ones only (SPARSIFY_WGMMA=0); each report times the engine against the pruned
# dense model on the CUDA execution provider in the same run. usage: bash bench/gpu/e2e_tile.sh [wgmma] [mma]
export PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include SPARSIFY_CACHE_DIR=/tmp/spc PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m models.bert --preset base --layers 4 --dtype fp16 --out /tmp/bb16.onnx > /dev/null
S="--input-shape input_ids=32x128 --input-shape attention_mask=32x128"
for v in ${@:-wgmma mma}; do
  if [ $v = mma ]; then export SPARSIFY_WGMMA=0; else unset SPARSIFY_WGMMA; fi
  timeout 280 python3 -m sparsify_onnx convert /tmp/bb16.onnx models/specs/bert_tile75.yaml -o /tmp/eng-tile-$v \
    --device cuda --arch sm_90 $S > $OUT/convert-tile75-$v.log 2>&1
  echo "$v rc=$?"; grep "^OK\|^FAILED\|error\|engine  \|pruned dense\|plan:" $OUT/convert-tile75-$v.log | head -6
done
