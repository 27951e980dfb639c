"""Constant folding for rules: initializers, Constant nodes, and shape computations.

Numeric values come from initializers/Constant outputs and from small all-constant
nodes evaluated with onnx's reference evaluator. Shape computations over symbolic
dims (Shape -> Gather -> Unsqueeze -> Concat ...) are folded into arrays of `Mono`.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .symbolic import dims_monos, is_concrete, mono_array, to_ints

_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct"}
_MAX_FOLD = 1 << 16  # elements: shape-sized computations only, never weights x weights


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold_constants(graph: onnx.GraphProto, weights: dict, shapes: dict, opset: int):
    """Return (consts, syms): numeric constant values and symbolic shape values by name."""
    consts: dict[str, np.ndarray] = dict(weights)
    syms: dict[str, np.ndarray] = {}

    def symval(name):
        if name in syms:
            return syms[name]
        v = consts.get(name)
        if v is not None and v.dtype.kind in "iu" and v.size <= _MAX_FOLD:
            return mono_array(v.tolist())
        return None

    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        op = node.op_type
        ins = list(node.input)
        try:
            if op == "Shape":
                s = shapes.get(ins[0])
                if s is None:
                    continue
                a = _attrs(node)
                dims = dims_monos(s)
                start, end = a.get("start", 0), a.get("end", None)
                dims = dims[slice(start, end)]
                arr = np.empty((len(dims),), dtype=object)
                for k, d in enumerate(dims):
                    arr[k] = d
                _store(node.output[0], arr, consts, syms)
                continue
            if op in ("Size",):
                s = shapes.get(ins[0])
                if s is None:
                    continue
                from .symbolic import prod
                arr = np.empty((), dtype=object)
                arr[()] = prod(dims_monos(s))
                _store(node.output[0], arr, consts, syms)
                continue
            if op in _NO_FOLD or not node.output:
                continue
            present = [n for n in ins if n]
            if all(n in consts for n in present) and present and op != "Constant":
                if sum(consts[n].size for n in present) <= _MAX_FOLD:
                    outs = _eval_numeric(node, [consts[n] if n else None for n in ins], opset)
                    if outs is not None:
                        for name, v in zip(node.output, outs):
                            if name and v is not None and np.asarray(v).size <= _MAX_FOLD:
                                consts[name] = np.asarray(v)
                        continue
            # symbolic fold
            vals = [symval(n) if n else None for n in ins]
            if any(v is None for v, n in zip(vals, ins) if n):
                continue
            out = _eval_symbolic(node, vals)
            if out is not None and not isinstance(out, np.ndarray):
                boxed = np.empty((), dtype=object)
                boxed[()] = out
                out = boxed
            if out is not None:
                _store(node.output[0], out, consts, syms)
        except Exception:  # folding is best effort
            continue
    return consts, syms


def _store(name, arr, consts, syms):
    if is_concrete(arr):
        consts[name] = to_ints(arr)
    else:
        syms[name] = arr


def _eval_numeric(node, values, opset):
    try:
        from onnx.reference import ReferenceEvaluator
        inputs = [f"i{k}" if v is not None else "" for k, v in enumerate(values)]
        n2 = helper.make_node(node.op_type, inputs, [f"o{k}" for k in range(len(node.output))],
                              domain=node.domain)
        n2.attribute.extend(node.attribute)
        ev = ReferenceEvaluator(n2, opsets={"": opset})
        feeds = {f"i{k}": v for k, v in enumerate(values) if v is not None}
        return ev.run(None, feeds)
    except Exception:
        return None


def _int_list(v):
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _eval_symbolic(node, vals):
    op = node.op_type
    a = _attrs(node)
    if op in ("Identity", "Cast"):
        return vals[0]
    if op == "Gather":
        idx = to_ints(vals[1])
        data = vals[0]
        axis = a.get("axis", 0)
        n = data.shape[axis]
        idx = np.where(idx < 0, idx + n, idx)
        return np.take(data, idx, axis=axis)
    if op == "Unsqueeze":
        axes = a.get("axes") if "axes" in a else _int_list(to_ints(vals[1]))
        out = vals[0]
        r = out.ndim + len(axes)
        for ax in sorted(x % r for x in axes):
            out = np.expand_dims(out, ax)
        return out
    if op == "Squeeze":
        axes = a.get("axes") if "axes" in a else (_int_list(to_ints(vals[1])) if len(vals) > 1 and vals[1] is not None else None)
        if axes is None:
            return None
        return np.squeeze(vals[0], axis=tuple(x % vals[0].ndim for x in axes))
    if op == "Concat":
        return np.concatenate([v for v in vals if v is not None], axis=a.get("axis", 0))
    if op == "Slice":
        data = vals[0]
        if data.ndim != 1:
            return None
        if "starts" in a:
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        else:
            starts = _int_list(to_ints(vals[1]))
            ends = _int_list(to_ints(vals[2]))
            axes = _int_list(to_ints(vals[3])) if len(vals) > 3 and vals[3] is not None else None
            steps = _int_list(to_ints(vals[4])) if len(vals) > 4 and vals[4] is not None else None
        if axes not in (None, [0], [-1]):
            return None
        idx = slice_indices(data.shape[0], starts[0], ends[0], steps[0] if steps else 1)
        return data[idx]
    if op in ("Mul", "Div"):
        x, y = np.broadcast_arrays(vals[0], vals[1])
        out = np.empty(x.shape, dtype=object)
        for i in np.ndindex(x.shape):
            if op == "Mul":
                out[i] = x[i] * y[i]
            else:
                r = x[i].div(y[i])
                if r is None:
                    return None
                out[i] = r
        return out
    return None


def slice_indices(dim: int, start: int, end: int, step: int) -> np.ndarray:
    """Indices taken by an ONNX Slice along one axis of size ``dim``."""
    if step == 0:
        raise ValueError("step 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, -1), dim - 1)
        end = min(max(end, -1), dim - 1)
    return np.arange(start, end, step, dtype=np.int64)
