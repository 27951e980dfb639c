"""Epilogue fusion matching: what follows a MatMul/Gemm that its kernel can absorb.

`match_epilogue(loaded, out_name, N)` walks forward from a linear node's output
over single-consumer edges: a bias Add with a constant [N] vector, then Relu or
GELU (onnx Gelu, com.microsoft Gelu, or the erf decomposition torch exports),
then a residual Add with a same-shaped tensor. Each step says why it stopped,
so --explain can print it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..graph import Loaded


@dataclass
class EpilogueMatch:
    bias: np.ndarray | None = None
    activation: str = "none"
    residual: str | None = None  # tensor name of the residual input
    output: str = ""  # tensor the fused op produces (output of the last absorbed node)
    nodes: list[onnx.NodeProto] = field(default_factory=list)  # absorbed nodes
    notes: list[str] = field(default_factory=list)  # why fusion stopped where it did


def _single_consumer(lo: Loaded, name: str, graph_outputs: set[str]):
    if name in graph_outputs:
        return None, f"{name} is a graph output"
    cons = lo.consumers.get(name, [])
    if len(cons) != 1:
        return None, f"{name} has {len(cons)} consumers"
    return cons[0], None


def _const(lo: Loaded, name: str) -> np.ndarray | None:
    return lo.weights.get(name)


def _scalar(lo: Loaded, name: str) -> float | None:
    v = _const(lo, name)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(()))


def _other(node: onnx.NodeProto, name: str) -> str | None:
    ins = [i for i in node.input]
    if len(ins) != 2:
        return None
    if ins[0] == name and ins[1] != name:
        return ins[1]
    if ins[1] == name and ins[0] != name:
        return ins[0]
    return None


def _match_erf_gelu(lo: Loaded, x: str, outs: set[str]):
    """x -> {Div(x, sqrt2) | Mul(x, 1/sqrt2)} -> Erf -> Add 1, then times x and 0.5 in any association:
    (x * (1+erf)) * 0.5 (torch's tracer), (x * 0.5) * (1+erf), x * ((1+erf) * 0.5) (torch.export).

    Returns (absorbed nodes, output name) or None.
    """
    cons = lo.consumers.get(x, [])
    if x in outs or len(cons) != 2:
        return None
    by_type = {n.op_type: n for n, _ in cons}
    scale_node = by_type.get("Div") or by_type.get("Mul")
    mul_x = None
    for n, _ in cons:
        if n.output[0] != scale_node.output[0] and n.op_type == "Mul":
            mul_x = n
    if scale_node is None or mul_x is None:
        return None
    other = _other(scale_node, x)
    if other is None or scale_node.input[0] != x:
        return None
    s = _scalar(lo, other)
    if s is None:
        return None
    inv = (1.0 / s) if scale_node.op_type == "Div" else s
    if not math.isclose(inv, 1 / math.sqrt(2), rel_tol=1e-3):
        return None
    chain = [scale_node]
    cur = scale_node.output[0]
    (erf, _), why = _single_consumer(lo, cur, outs) if True else (None, None)
    if erf is None or erf.op_type != "Erf":
        return None
    chain.append(erf)
    c, why = _single_consumer(lo, erf.output[0], outs)
    if c is None or c[0].op_type != "Add":
        return None
    add1 = c[0]
    one = _scalar(lo, _other(add1, erf.output[0]) or "")
    if one is None or not math.isclose(one, 1.0, rel_tol=1e-6):
        return None
    chain.append(add1)
    c, why = _single_consumer(lo, add1.output[0], outs)
    if c is None or c[0].op_type != "Mul":
        return None
    m1 = c[0]
    half = _scalar(lo, _other(m1, add1.output[0]) or "")
    if half is not None and math.isclose(half, 0.5, rel_tol=1e-6):  # x * ((1+erf) * 0.5)
        c2, why = _single_consumer(lo, m1.output[0], outs)
        if c2 is None or c2[0] is not mul_x or set(mul_x.input) != {x, m1.output[0]}:
            return None
        chain += [m1, mul_x]
        return chain, mul_x.output[0]
    if m1.output[0] == mul_x.output[0]:  # x * (1+erf) then * 0.5
        c2, why = _single_consumer(lo, m1.output[0], outs)
        if c2 is None or c2[0].op_type != "Mul":
            return None
        half = _scalar(lo, _other(c2[0], m1.output[0]) or "")
        if half is None or not math.isclose(half, 0.5, rel_tol=1e-6):
            return None
        chain += [m1, c2[0]]
        return chain, c2[0].output[0]
    # (x*0.5) * (1+erf): mul_x is Mul(x, 0.5), m1 = Mul(mul_x.out, add1.out)
    half = _scalar(lo, _other(mul_x, x) or "")
    if half is None or not math.isclose(half, 0.5, rel_tol=1e-6):
        return None
    if set(m1.input) != {mul_x.output[0], add1.output[0]}:
        return None
    if len(lo.consumers.get(mul_x.output[0], [])) != 1:
        return None
    chain += [mul_x, m1]
    return chain, m1.output[0]


def match_epilogue(lo: Loaded, out_name: str, N: int, *, out_shape=None) -> EpilogueMatch:
    outs = {o.name for o in lo.graph.output}
    m = EpilogueMatch(output=out_name)
    cur = out_name
    # 1. bias
    c, why = _single_consumer(lo, cur, outs)
    if c is not None and c[0].op_type == "Add":
        other = _other(c[0], cur)
        b = _const(lo, other) if other else None
        if b is not None and b.size == N and b.shape[-1:] == (N,) and np.issubdtype(b.dtype, np.floating):
            m.bias = b.reshape(N)
            m.nodes.append(c[0])
            cur = c[0].output[0]
        elif b is not None:
            m.notes.append(f"Add after the product adds a constant of shape {list(b.shape)}, not a [{N}] bias")
    elif why:
        m.notes.append(why)
    # 2. activation
    c, why = _single_consumer(lo, cur, outs)
    if c is not None:
        n = c[0]
        if n.op_type == "Relu" and n.domain in ("", "ai.onnx"):
            m.activation = "relu"
            m.nodes.append(n)
            cur = n.output[0]
        elif n.op_type == "Gelu" and n.domain in ("", "ai.onnx", "com.microsoft"):
            approx = next((a.s.decode() for a in n.attribute if a.name == "approximate"), "none")
            m.activation = "gelu_tanh" if approx == "tanh" else "gelu"
            m.nodes.append(n)
            cur = n.output[0]
        elif n.op_type == "FastGelu" and n.domain == "com.microsoft" and len([i for i in n.input if i]) == 1:
            m.activation = "gelu_tanh"
            m.nodes.append(n)
            cur = n.output[0]
    if m.activation == "none":
        g = _match_erf_gelu(lo, cur, outs)
        if g is not None:
            nodes, cur = g
            m.activation = "gelu"
            m.nodes += nodes
    # 3. residual
    c, why = _single_consumer(lo, cur, outs)
    if c is not None and c[0].op_type == "Add":
        other = _other(c[0], cur)
        if other and other not in lo.weights:
            s_cur = lo.shapes.get(cur)
            s_oth = lo.shapes.get(other)
            if s_cur and s_oth and tuple(s_cur) == tuple(s_oth) and all(d is not None for d in s_cur):
                m.residual = other
                m.nodes.append(c[0])
                cur = c[0].output[0]
            else:
                m.notes.append(f"residual Add not fused: shapes {s_cur} and {s_oth} not provably equal")
    m.output = cur
    return m
