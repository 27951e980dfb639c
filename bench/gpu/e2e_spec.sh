#!/usr/bin/env bash
# On the GPU host after .gpu/install.sh (ORT staged): BERT-base widths, 4 layers, fp16, every encoder linear
# sparse by models/specs/$SPEC.yaml (default bert_tile75: tile-wise 75%; bert_2of4: 2:4; bert_unstructured90), batch 32 x 128,
# converted and tuned on the GPU with the default kernels (Hopper wgmma, with their portable fallback), then
# without them (SPARSIFY_WGMMA=0: mma.sync, or cuSPARSELt for 2:4); each report times the engine against the
# pruned dense model on the CUDA execution provider in the same run.
# usage: [SPEC=bert_2of4] bash bench/gpu/e2e_spec.sh [wgmma] [mma] [keepk] [graph]   (keepk: wgmma with --no-reorder;
#        graph: wgmma with --cuda-graph, the report timed under onnxruntime's CUDA graphs)
export PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include SPARSIFY_CACHE_DIR=/tmp/spc PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m models.bert --preset base --layers 4 --dtype fp16 --out /tmp/bb16.onnx > /dev/null
S="--input-shape input_ids=32x128 --input-shape attention_mask=32x128"
SPEC=${SPEC:-bert_tile75}
for v in ${@:-wgmma mma}; do
  if [ $v = mma ]; then export SPARSIFY_WGMMA=0; else unset SPARSIFY_WGMMA; fi
  X=""; [ $v = keepk ] && X="--no-reorder"; [ $v = graph ] && X="--cuda-graph"
  timeout ${CONVERT_TIMEOUT:-280} python3 -m sparsify_onnx convert /tmp/bb16.onnx models/specs/$SPEC.yaml -o /tmp/eng-$SPEC-$v \
    --device cuda --arch sm_90 $S $X > $OUT/convert-$SPEC-$v.log 2>&1
  echo "$v rc=$?"; grep "^OK\|^FAILED\|error\|engine  \|pruned dense\|plan:\|tuning.*nm" $OUT/convert-$SPEC-$v.log | head -12
done
# the engines' reports (per-node times) and manifests (the tuned tiles) beside the logs
for v in ${@:-wgmma mma}; do
  for f in report.md manifest.json; do [ -f /tmp/eng-$SPEC-$v/$f ] && cp /tmp/eng-$SPEC-$v/$f $OUT/$v-$f; done
done
