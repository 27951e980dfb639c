"""LayerNorm + Gather fusion: one pass over the row instead of two.

`fuse_layernorm_gather(model, gathers) -> (model, names of the Gathers fused)` replaces every
``LayerNormalization`` over the last axis whose only consumer is a ``Gather`` along that axis with constant 1-D
int64 indices that permute the axis (what the K permutation inserts after a LayerNorm whose consumers read its
output in another order, permute.py) by one ``ai.sparsify::LayerNormGather(X, scale, bias, index)``:

    Y[..., j] = LayerNormalization(X, scale, bias)[..., index[j]]

computed in fp32 (LayerNormalization's default stash type), from float32 or float16 X. The op is part of the
static op layer (custom_ops/sparsify_ops.cc for the CPU, custom_ops/layernorm_gather.cu for CUDA): it has no
weights to specialise on, so it is not generated per model.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

DOMAIN = "ai.sparsify"
OP_TYPE = "LayerNormGather"
TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def fuse_layernorm_gather(model: onnx.ModelProto, gathers=None) -> tuple[onnx.ModelProto, list[str]]:
    """The model with each fusable LayerNorm + Gather pair replaced (module docstring), of the Gather nodes named in
    `gathers` (None: all); a copy when any is."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output if o}
    consumers: dict = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    pairs = []
    for gather in g.node:
        if gather.op_type != "Gather" or gather.domain not in ("", "ai.onnx") or len(gather.input) != 2:
            continue
        if gathers is not None and gather.name not in gathers:
            continue
        ln = producer.get(gather.input[0])
        idx = inits.get(gather.input[1])
        if ln is None or ln.op_type != "LayerNormalization" or ln.domain not in ("", "ai.onnx") or idx is None:
            continue
        if len(consumers.get(ln.output[0], [])) != 1 or ln.output[0] in outputs or any(ln.output[1:]):
            continue
        scale = inits.get(ln.input[1]) if len(ln.input) > 1 else None
        bias = inits.get(ln.input[2]) if len(ln.input) > 2 and ln.input[2] else None
        if scale is None or scale.data_type not in TYPES or len(scale.dims) != 1 or len(idx.dims) != 1 or \
                idx.data_type != onnx.TensorProto.INT64:
            continue
        if len(ln.input) > 2 and ln.input[2] and bias is None:
            continue
        H = scale.dims[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in ln.attribute}
        gattrs = {a.name: helper.get_attribute_value(a) for a in gather.attribute}
        if int(gattrs.get("axis", 0)) != -1:
            continue  # (permute.py writes -1; another spelling needs the rank. A 1-D scale means the LayerNorm's
            #          axis is the last one, however it is spelled: scale has X's shape from the axis on)
        index = numpy_helper.to_array(idx)
        if index.size != H or not np.array_equal(np.sort(index), np.arange(H)):
            continue  # (a gather that is not a permutation of the axis)
        pairs.append((ln, gather, scale, bias, index, float(attrs.get("epsilon", 1e-5))))
    if not pairs:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    drop = {t for ln, gather, *_ in pairs for t in (ln.output[0], gather.output[0])}  # outputs of removed nodes
    new_inits, fused, replacement = [], [], {}
    for ln, gather, scale, bias, index, eps in pairs:
        name = ln.name or f"LayerNormalization:{ln.output[0]}"
        if bias is None:
            bname = f"{name}/zero_bias"
            new_inits.append(numpy_helper.from_array(np.zeros(scale.dims[0], helper.tensor_dtype_to_np_dtype(
                scale.data_type)), bname))
        else:
            bname = bias.name
        node = helper.make_node(OP_TYPE, [ln.input[0], scale.name, bname, gather.input[1]], [gather.output[0]],
                                name=f"{name}/Gather", domain=DOMAIN, epsilon=eps)
        replacement[gather.output[0]] = node
        fused.append(gather.name)
    nodes = []
    for n in g.node:
        if n.output and n.output[0] in drop:
            if n.output[0] in replacement:
                nodes.append(replacement[n.output[0]])
            continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    vi = [v for v in g.value_info if v.name not in drop or v.name in replacement]
    del g.value_info[:]
    g.value_info.extend(vi)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, fused
