#!/usr/bin/env bash
# On the GPU host after .gpu/install.sh (ORT staged): a HF BertModel (BERT-base widths, $LAYERS layers, fp16,
# random init) exported by torch.onnx as a user would (bench/gpu/hf_export.py: the tracer at opset 14 and/or
# torch.export at opset 18), every encoder linear 90% unstructured (models/specs/bert_hf_unstructured90.yaml),
# converted and tuned on the GPU, the report timed under onnxruntime's CUDA graphs against the pruned dense
# model in the same run, batch 32 x 128.
# usage: OUT=... [LAYERS=4] [MODEL=gpt2] bash bench/gpu/e2e_hf.sh [traced] [dynamo]   (gpt2: every Gemm 90% unstructured)
export PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include SPARSIFY_CACHE_DIR=/tmp/spc PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
S="--input-shape input_ids=32x128 --input-shape attention_mask=32x128"
for e in ${@:-traced dynamo}; do
  python3 bench/gpu/hf_export.py $e /tmp/hf-$e.onnx --layers ${LAYERS:-4} --model ${MODEL:-bert} > $OUT/export-$e.log 2>&1 || { tail $OUT/export-$e.log; continue; }
  SP=models/specs/bert_hf_unstructured90.yaml
  [ "${MODEL:-bert}" = gpt2 ] && { SP=/tmp/gpt2.yaml; printf 'version: 1\nrules:\n  - select: {op: Gemm, node: "*"}\n    pattern: unstructured\n    sparsity: 0.9\npropagate: true\n' > $SP; }
  timeout ${CONVERT_TIMEOUT:-280} python3 -m sparsify_onnx convert /tmp/hf-$e.onnx $SP \
    -o /tmp/eng-hf-$e --device cuda --arch sm_90 --cuda-graph $S > $OUT/convert-hf-$e.log 2>&1
  echo "$e rc=$?"; grep "^OK\|^FAILED\|error\|engine  \|pruned dense\|plan:\|LayerNorms write" $OUT/convert-hf-$e.log | head -12
  for f in report.md manifest.json; do [ -f /tmp/eng-hf-$e/$f ] && cp /tmp/eng-hf-$e/$f $OUT/hf-$e-$f; done
done
