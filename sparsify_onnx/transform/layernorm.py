"""LayerNorms in a graph, whichever way the exporter wrote them.

`find_layernorms(lo) -> {output name: LayerNormMatch}`: every normalisation over the last axis with constant 1-D
scale (and bias) that the K permutation can see through (permute.py) and transform.lngather can fuse with its
Gather: the ``LayerNormalization`` op (opset 17 on, what ``torch.onnx.export(dynamo=True)`` writes), and the
decomposition that opset-16-and-older exports write (torch's tracer for ``nn.LayerNorm``)::

    mean = ReduceMean(x, axes=[-1])            (keepdims=1)
    d    = Sub(x, mean)
    dc   = Cast(d, to=float|double)            (optional: fp16 models)
    var  = ReduceMean(Pow(dc, 2), axes=[-1])   (or Mul(dc, dc))
    n    = Div(dc, Sqrt(Add(var, eps)))
    nc   = Cast(n, to=x's type)                (optional)
    y    = Add(Mul(nc, scale), bias)           (either operand order; the Add only with a bias)

Each intermediate must have no reader outside the pattern, and none may be a graph output, so the whole
pattern can be replaced by one node. onnxruntime fuses the same forms into its own LayerNormalization when it
loads the model (its LayerNormFusion), so they are one op to it too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ..graph import Loaded

FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


@dataclass
class LayerNormMatch:
    nodes: list  # the nodes that compute it, in graph order (one for the LayerNormalization op)
    x: str
    y: str
    scale: str  # 1-D initializer
    bias: str | None  # 1-D initializer, or None
    epsilon: float

    @property
    def name(self) -> str:
        last = self.nodes[-1]
        return (self.nodes[0].name if len(self.nodes) == 1 else last.name) or f"LayerNorm:{self.y}"


def find_layernorms(lo: Loaded) -> dict[str, LayerNormMatch]:
    """{y: match} for every LayerNorm of lo's graph (module docstring)."""
    outputs = {o.name for o in lo.graph.output}
    out = {}
    for node in lo.graph.node:
        m = _op(lo, node) if node.op_type == "LayerNormalization" else \
            _decomposed(lo, node, outputs) if node.op_type == "ReduceMean" else None
        if m is not None:
            out[m.y] = m
    return out


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _vector(lo: Loaded, name: str) -> bool:
    return name in lo.initializer_names and lo.weights[name].ndim == 1 and lo.weights[name].dtype.kind == "f"


def _op(lo: Loaded, node) -> LayerNormMatch | None:
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or any(node.output[1:]):
        return None
    a = _attrs(node)  # (a 1-D scale means the last axis however `axis` spells it: scale has X's dims from it on)
    scale, bias = node.input[1], (node.input[2] if len(node.input) > 2 and node.input[2] else None)
    if not _vector(lo, scale) or (bias is not None and not _vector(lo, bias)):
        return None
    return LayerNormMatch([node], node.input[0], node.output[0], scale, bias, float(a.get("epsilon", 1e-5)))


def _last_axis(lo: Loaded, x: str, axis: int) -> bool:
    dims = lo.shapes.get(x)
    return axis == -1 or (dims is not None and axis == len(dims) - 1)


def _reduces_last(lo: Loaded, node) -> bool:
    """ReduceMean over the last axis only, keeping it."""
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        v = lo.weights.get(node.input[1])
        axes = None if v is None else [int(i) for i in np.asarray(v).reshape(-1)]
    return axes is not None and len(axes) == 1 and int(a.get("keepdims", 1)) == 1 and \
        _last_axis(lo, node.input[0], int(axes[0]))


def _decomposed(lo: Loaded, mean_node, outputs: set) -> LayerNormMatch | None:
    x = mean_node.input[0]
    if not _reduces_last(lo, mean_node):
        return None
    nodes = [mean_node]

    def only(name, op=None):
        """The single reader of `name` (of type `op`), or None."""
        cons = lo.consumers.get(name, [])
        if name in outputs or len(cons) != 1 or (op and cons[0][0].op_type not in op):
            return None
        return cons[0][0]

    def scalar(name):
        v = lo.weights.get(name)
        return None if v is None or v.size != 1 else float(np.asarray(v).reshape(()))

    sub = only(mean_node.output[0], ("Sub",))
    if sub is None or list(sub.input) != [x, mean_node.output[0]]:
        return None
    nodes.append(sub)
    dc = sub.output[0]
    cons = lo.consumers.get(dc, [])
    if len(cons) == 1 and cons[0][0].op_type == "Cast" and int(_attrs(cons[0][0]).get("to", 0)) in FLOATS:
        nodes.append(cons[0][0])
        dc = cons[0][0].output[0]
    readers = list({id(c): c for c, _ in lo.consumers.get(dc, [])}.values())  # (Mul(dc, dc) reads it twice)
    if dc in outputs or sub.output[0] in outputs or len(readers) != 2:
        return None
    sq = next((r for r in readers if (r.op_type == "Pow" and r.input[0] == dc and scalar(r.input[1]) == 2.0)
               or (r.op_type == "Mul" and list(r.input) == [dc, dc])), None)
    div = next((r for r in readers if r.op_type == "Div" and r.input[0] == dc), None)
    if sq is None or div is None:
        return None
    var = only(sq.output[0], ("ReduceMean",))
    add = var and _reduces_last(lo, var) and only(var.output[0], ("Add",))
    if not add:
        return None
    eps = scalar(next((i for i in add.input if i != var.output[0]), ""))
    sqrt = only(add.output[0], ("Sqrt",))
    if eps is None or sqrt is None or only(sqrt.output[0], ("Div",)) is not div or div.input[1] != sqrt.output[0]:
        return None
    nodes += [sq, var, add, sqrt, div]
    n = div.output[0]
    nxt = only(n)
    if nxt is not None and nxt.op_type == "Cast" and int(_attrs(nxt).get("to", 0)) == lo.dtypes.get(x):
        nodes.append(nxt)
        n = nxt.output[0]
    mul = only(n, ("Mul",))
    if mul is None:
        return None
    scale = next((i for i in mul.input if i != n), None)
    if scale is None or not _vector(lo, scale):
        return None
    nodes.append(mul)
    y, bias = mul.output[0], None
    badd = only(y, ("Add",))
    if badd is not None:
        b = next((i for i in badd.input if i != y), None)
        if b is not None and _vector(lo, b) and lo.weights[b].shape == lo.weights[scale].shape:
            nodes.append(badd)
            y, bias = badd.output[0], b
    if lo.dtypes.get(y, lo.dtypes.get(x)) != lo.dtypes.get(x):
        return None
    return LayerNormMatch(nodes, x, y, scale, bias, eps)
