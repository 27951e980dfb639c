"""`sparsify-onnx inspect MODEL [SPEC]`: what a user needs to write a spec.

`inspect_model(loaded)` lists every (node, weight input) where the weight has at
least two axes (matrices, conv kernels, embedding tables; biases, shape
constants and int32/int64/bool buffers are left out), with its stored layout, shape, dtype, density and the
structure its zeros already form. `inspect_spec(loaded, spec)` says what each
rule selects (after later rules and `exclude`) and the density before/after.
"""
from __future__ import annotations

import numpy as np
import onnx

from ..graph import Loaded
from ..spec import Spec
from .select import reduction_axis, stored_layout
from .sparsifiers import describe_zeros


# int32/int64/bool 2-D initializers are index and shape buffers (position ids ...), not weights
_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.bool_))


def _dtype_name(loaded: Loaded, name: str, arr: np.ndarray) -> str:
    et = loaded.dtypes.get(name)
    if et:
        try:
            return onnx.helper.tensor_dtype_to_np_dtype(et).name if et != onnx.TensorProto.BFLOAT16 else "bfloat16"
        except Exception:
            pass
    return str(arr.dtype)


def inspect_model(loaded: Loaded) -> list[dict]:
    """One row per node input fed by a weight with >= 2 axes, in graph order."""
    rows: list[dict] = []
    cache: dict[tuple[str, int | None], dict] = {}
    for node in loaded.graph.node:
        for idx, name in enumerate(node.input):
            if not name or name not in loaded.weights:
                continue
            W = loaded.weights[name]
            if W.ndim < 2 or W.dtype in _INDEX_DTYPES:
                continue
            ax = reduction_axis(node, idx, W.ndim)
            key = (name, ax)
            if key not in cache:
                cache[key] = describe_zeros(W, ax)
            z = cache[key]
            rows.append({
                "node": loaded.node_name(node),
                "op": node.op_type,
                "input": idx,
                "weight": name,
                "layout": stored_layout(node, idx, W.ndim),
                "shape": list(W.shape),
                "dtype": _dtype_name(loaded, name, W),
                "reduction_axis": ax,
                "density": z["density"],
                "structure": z["structure"],
                "zeros": z,
            })
    return rows


def inspect_spec(loaded: Loaded, spec: Spec, annotated=None) -> list[dict]:
    """One row per rule: the tensors it selects (it won), those a later rule or `exclude` took away,
    the nodes through which, the pattern, and the size-weighted density before/after pruning.

    `annotated`: the result of `annotate(loaded, spec)` when the caller has it (pruning is not
    repeated). Raises the same SparsifyError as `annotate` for a rule that selects nothing or zeros
    that do not fit."""
    from .core import annotate  # local: core imports the package

    ann = annotated if annotated is not None else annotate(loaded, spec)
    rows = []
    for rule in spec.rules:
        won = [t for t, s in ann.selections.items() if s.rule.index == rule.index]
        matched = ann.rule_matches.get(rule.index, [])
        excluded = [t for t in matched if t in ann.excluded_tensors]
        overridden = [t for t in matched if t not in won and t not in ann.excluded_tensors]
        nodes: list[str] = []
        for t in won:
            for n, _ in ann.selections[t].consumers:
                if n not in nodes:
                    nodes.append(n)
        sizes = np.array([int(np.prod(loaded.weights[t].shape)) if t in loaded.weights else 0 for t in won],
                         dtype=np.float64)
        if sizes.sum() > 0:
            before = float(sum(ann.selections[t].density_before * s for t, s in zip(won, sizes)) / sizes.sum())
            after = float(sum(ann.selections[t].density_after * s for t, s in zip(won, sizes)) / sizes.sum())
        else:
            before = after = None
        rows.append({
            "rule": rule.index,
            "line": rule.line,
            "where": spec.rule_where(rule),
            "select": rule.select.describe(),
            "pattern": rule.pattern.short(),
            "sparsity": rule.sparsity,
            "method": rule.method if rule.sparsity is not None else None,
            "dynamic": rule.dynamic,
            "tensors": won,
            "nodes": nodes,
            "overridden": overridden,
            "excluded": excluded,
            "density_before": before,
            "density_after": after,
        })
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def format_model_table(rows: list[dict]) -> str:
    """Plain aligned text of `inspect_model` rows."""
    if not rows:
        return "no node has a weight with two or more axes"
    body = [[r["node"], r["op"], r["weight"], r["layout"], "x".join(map(str, r["shape"])), r["dtype"],
             f"{r['density']:.3f}", r["structure"]] for r in rows]
    return _table(["node", "op", "weight", "layout", "shape", "dtype", "density", "zeros"], body)


def _names(xs: list[str], n: int = 3) -> str:
    if not xs:
        return "-"
    return ", ".join(xs[:n]) + (f" (+{len(xs) - n} more)" if len(xs) > n else "")


def format_spec_table(rows: list[dict]) -> str:
    """Plain aligned text of `inspect_spec` rows."""
    body = []
    for r in rows:
        what = r["pattern"] + (" dynamic" if r["dynamic"] else "")
        if r["sparsity"] is not None:
            what += f" @{r['sparsity']:g} {r['method']}"
        dens = "-" if r["density_before"] is None else f"{r['density_before']:.3f} -> {r['density_after']:.3f}"
        notes = []
        if r["overridden"]:
            notes.append(f"{len(r['overridden'])} overridden by later rules")
        if r["excluded"]:
            notes.append(f"{len(r['excluded'])} excluded")
        body.append([str(r["rule"]), str(r["line"]), r["select"], what, str(len(r["tensors"])),
                     _names(r["tensors"]), dens, "; ".join(notes) or "-"])
    return _table(["rule", "line", "select", "pattern", "#", "tensors", "density", "notes"], body)
