"""LayerNorm + Gather fusion: one pass over the row instead of two.

`fuse_layernorm_gather(model, gathers) -> (model, names of the Gathers fused)` replaces every LayerNorm over the
last axis (the ``LayerNormalization`` op or the exporters' decomposition: transform/layernorm.py) whose only
consumer is a ``Gather`` along that axis with constant 1-D int64 indices that permute the axis (what the K
permutation inserts after a LayerNorm whose consumers read its output in another order, permute.py) by one
``ai.sparsify::LayerNormGather(X, scale, bias, index)``:

    Y[..., j] = LayerNormalization(X, scale, bias)[..., index[j]]

computed in fp32 (LayerNormalization's default stash type), from float32 or float16 X. The op is part of the
static op layer (custom_ops/sparsify_ops.cc for the CPU, custom_ops/layernorm_gather.cu for CUDA): it has no
weights to specialise on, so it is not generated per model.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Loaded, index_model
from .layernorm import find_layernorms

DOMAIN = "ai.sparsify"
OP_TYPE = "LayerNormGather"


def fuse_layernorm_gather(model: onnx.ModelProto, gathers=None, known: Loaded | None = None
                          ) -> tuple[onnx.ModelProto, list[str]]:
    """The model with each fusable LayerNorm + Gather pair replaced (module docstring), of the Gather nodes named in
    `gathers` (None: all); a copy when any is. `known`: an index with the tensors' shapes and types (a
    decomposition's casts and ReduceMean axes are checked against them), else shape inference runs."""
    lo = index_model(model, infer_shapes=known is None)
    if known is not None:
        lo.shapes.update(known.shapes)
        lo.dtypes.update(known.dtypes)
    norms = find_layernorms(lo)
    outputs = {o.name for o in model.graph.output}
    pairs = []
    for gather in model.graph.node:
        if gather.op_type != "Gather" or gather.domain not in ("", "ai.onnx") or len(gather.input) != 2:
            continue
        if gathers is not None and gather.name not in gathers:
            continue
        m = norms.get(gather.input[0])
        idx = gather.input[1]
        if m is None or idx not in lo.initializer_names or len(lo.consumers.get(m.y, [])) != 1 or m.y in outputs:
            continue
        scale = lo.weights[m.scale]
        if scale.dtype not in (np.float16, np.float32):  # (the op's types)
            continue
        if int({a.name: helper.get_attribute_value(a) for a in gather.attribute}.get("axis", 0)) != -1:
            continue  # (permute.py writes -1; another spelling needs the rank)
        index = lo.weights[idx]
        H = scale.shape[0]
        if index.dtype != np.int64 or index.shape != (H,) or not np.array_equal(np.sort(index), np.arange(H)):
            continue  # (a gather that is not a permutation of the axis)
        pairs.append((m, gather))
    if not pairs:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    replacement, drop, new_inits, fused = {}, set(), [], []
    for m, gather in pairs:
        bias = m.bias
        if bias is None:
            bias = f"{m.name}/zero_bias"
            new_inits.append(numpy_helper.from_array(np.zeros_like(lo.weights[m.scale]), bias))
        node = helper.make_node(OP_TYPE, [m.x, m.scale, bias, gather.input[1]], [gather.output[0]],
                                name=f"{m.name}/Gather", domain=DOMAIN, epsilon=m.epsilon)
        replacement[gather.output[0]] = node
        drop |= {n.output[0] for n in m.nodes}
        fused.append(gather.name)
    nodes = []
    for n in g.node:
        if n.output and n.output[0] in replacement:
            nodes.append(replacement[n.output[0]])
        elif not (n.output and n.output[0] in drop):
            nodes.append(n)
    read = {i for n in nodes for i in n.input} | outputs
    nodes = [n for n in nodes if n.op_type != "Constant" or any(o in read for o in n.output)]  # (eps, 2.0)
    del g.node[:]
    g.node.extend(nodes)
    keep = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    vi = [v for v in g.value_info if v.name in read]
    del g.value_info[:]
    g.value_info.extend(vi)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, fused
