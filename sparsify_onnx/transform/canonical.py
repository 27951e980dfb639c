"""Constant vectors, one per reader.

`own_vectors(lo) -> Loaded`: every node input that reads a 1-D float constant reads an initializer of its own.
Exporters share equal values: torch.onnx's tracer (opset 16 and older) reads one initializer through an
``Identity`` node per further use, its dynamo exporter reads the same initializer directly, and in a freshly
initialised model every LayerNorm scale is ones and every bias zeros. A bias behind an ``Identity`` is not a
constant to the epilogue fusion (fusion.py), and a vector shared by several LayerNorms or linears would tie
the orders of every axis it runs along into one (permute.py). The model's outputs do not change.
"""
from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from ..graph import Loaded, with_new_values


def own_vectors(lo: Loaded) -> Loaded:
    """lo itself when no vector is shared or read through an Identity, else the index of a rewritten copy."""
    def vector(t):
        w = lo.weights.get(t) if t in lo.initializer_names else None
        return w is not None and w.ndim == 1 and w.size > 1 and w.dtype.kind == "f"

    outputs = {o.name for o in lo.graph.output}
    folded = {n.output[0]: n.input[0] for n in lo.graph.node
              if n.op_type == "Identity" and n.input and vector(n.input[0]) and n.output[0] not in outputs}
    seen, moves = set(), []  # (node index, input index, source initializer)
    for k, node in enumerate(lo.graph.node):
        if node.op_type == "Identity" and node.output[0] in folded:
            continue
        for i, t in enumerate(node.input):
            src = folded.get(t, t)
            if not vector(src):
                continue
            if src in seen or t != src:
                moves.append((k, i, src))
            seen.add(src)
    if not moves:
        return lo
    model = onnx.ModelProto()
    model.CopyFrom(lo.model)
    names, new = set(lo.initializer_names) | set(lo.producer), {}
    for k, i, src in moves:
        j = 1
        while f"{src}.{j}" in names:
            j += 1
        name = f"{src}.{j}"
        names.add(name)
        model.graph.node[k].input[i] = name
        new[name] = lo.weights[src]
        model.graph.initializer.append(numpy_helper.from_array(new[name], name))
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in folded)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    read = {t for n in keep for t in n.input} | outputs
    inits = [t for t in model.graph.initializer if t.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    return with_new_values(lo, model, new, {t: (a.shape, helper.np_dtype_to_tensor_dtype(a.dtype))
                                            for t, a in new.items()})
