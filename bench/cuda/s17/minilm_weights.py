"""Session 17: MiniLM's trained linears (all-MiniLM-L6-v2, fp16), 90% of each weight's smallest magnitudes zeroed
as models/specs/bert_unstructured90.yaml does, K reordered as conversion orders it (transform/permute.unit_order:
the whole K with what stays past two in its last TAIL_ROWS rows, or per head for the attention output), saved as
[K, N] float32 .npy files for bench/cuda/ab.py (AB_WEIGHT=file).
usage: python bench/cuda/s17/minilm_weights.py MODEL.onnx OUTDIR"""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from sparsify_onnx.transform.permute import natural_residual, unit_order

WANT = {  # file: (node name fragment, heads)
    "ffn1_l1": ("layer.1/intermediate/dense/MatMul", 1), "ffn1_l0": ("layer.0/intermediate/dense/MatMul", 1),
    "ffn1_l5": ("layer.5/intermediate/dense/MatMul", 1), "attn_out_l3": ("layer.3/attention/output/dense/MatMul", 12),
    "ffn2_l4": ("layer.4/output/dense/MatMul", 1), "ffn2_l5": ("layer.5/output/dense/MatMul", 1),
}
model, out = onnx.load(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
inits = {i.name: i for i in model.graph.initializer}
for name, (frag, heads) in WANT.items():
    node = next(n for n in model.graph.node if n.op_type == "MatMul" and frag in n.name)
    W = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    W[np.abs(W) <= np.quantile(np.abs(W), 0.9)] = 0
    order = unit_order(W != 0, heads, 0)
    W = np.ascontiguousarray(W[order])
    m = W != 0
    over = m.reshape(-1, 4, m.shape[1]).sum(axis=1) > 2
    chunks = int(over.reshape(-1, 2, m.shape[1]).any(axis=(1, 2)).sum())
    np.save(os.path.join(out, name + ".npy"), W)
    print(name, W.shape, "past two:", natural_residual(m), "in", chunks, "chunks of 8 k", flush=True)
