"""annotate(loaded, spec): select, prune, seed TeSAs. prune_model: the pruned dense model."""
from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import SparsifyError
from ..graph import Loaded, index_model, replace_initializer
from ..spec import Rule, Spec
from ..tesa import TeSA
from . import Annotated, Selection
from .select import reduction_axis, select
from .sparsifiers import fits, prune


def _density(W: np.ndarray) -> float:
    return float(np.count_nonzero(W) / W.size) if W.size else 1.0


def _weight_axis(loaded: Loaded, name: str, cons: list[tuple[str, int]], rule: Rule, where: str) -> int | None:
    """The reduction axis of a selected weight, from the nodes through which it was selected."""
    by_name = {loaded.node_name(n): n for n, _ in loaded.consumers.get(name, [])}
    ndim = loaded.weights[name].ndim
    axes: dict[int, str] = {}
    for nname, idx in cons:
        node = by_name.get(nname)
        if node is None:
            continue
        ax = reduction_axis(node, idx, ndim)
        if ax is not None:
            axes.setdefault(ax, f"{nname} ({node.op_type} input {idx})")
    if len(axes) > 1 and rule.pattern.kind in ("nm", "tile"):
        shown = "; ".join(f"axis {a} for {w}" for a, w in axes.items())
        raise SparsifyError(f"weight {name} is used with different reduction axes ({shown}), so pattern "
                            f"{rule.pattern.short()} is ambiguous", where=where,
                            hint="select it through one node with {node: ..., input: ...}, or use a pattern "
                                 "without a reduction axis (block, channel, unstructured)")
    return next(iter(axes), None)


def _rng(rule: Rule, name: str) -> np.random.Generator:
    return np.random.default_rng([rule.seed & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


def _replace_constant(model: onnx.ModelProto, name: str, array: np.ndarray) -> bool:
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    a.t.CopyFrom(numpy_helper.from_array(array, a.t.name))
                    return True
    return False


def annotate(loaded: Loaded, spec: Spec) -> Annotated:
    """Apply `spec` to `loaded`: select tensors, prune weights, seed one TeSA per selected tensor.

    The source model is not modified; `Annotated.loaded` is a re-indexed copy whose selected weights
    hold their pruned values.
    """
    winners, rule_matches, excluded_nodes, excluded_tensors = select(loaded, spec)
    selections: dict[str, Selection] = {}
    tesas: dict[str, TeSA] = {}
    new_weights: dict[str, np.ndarray] = {}
    for name, (rule, cons) in winners.items():
        where = spec.rule_where(rule)
        if rule.dynamic or not loaded.is_weight(name):
            shape = loaded.shapes.get(name, ())
            t = TeSA.dense(name, shape if shape is not None else ())
            t.pattern = rule.pattern
            t.dynamic = True
            selections[name] = Selection(tensor=name, rule=rule, consumers=cons, pattern=rule.pattern,
                                         reduction_axis=None, density_before=1.0, density_after=1.0,
                                         pruned=False, dynamic=True)
            tesas[name] = t
            continue
        W = loaded.weights[name]
        pat = rule.pattern
        if pat.kind == "channel" and not -max(W.ndim, 1) <= pat.axis < max(W.ndim, 1):
            raise SparsifyError(f"channel axis {pat.axis} is out of range for weight {name} of shape "
                                f"{list(W.shape)}", where=where,
                                hint=f"use an axis in 0..{max(W.ndim - 1, 0)} of the stored layout "
                                     "(`sparsify-onnx inspect MODEL` shows it)")
        if pat.kind != "dense" and not (np.issubdtype(W.dtype, np.number) or W.dtype.kind == "V"
                                        or "float" in str(W.dtype)):
            raise SparsifyError(f"weight {name} has dtype {W.dtype}, which cannot be sparsified", where=where,
                                hint="select a numeric weight")
        ax = _weight_axis(loaded, name, cons, rule, where)
        before = _density(W)
        if rule.sparsity is not None:
            P = prune(W, pat, rule.sparsity, rule.method, ax, _rng(rule, name))
            pruned = True
            if not np.array_equal(P, W):
                new_weights[name] = P
        else:
            reason = fits(W, pat, ax)
            if reason is not None:
                raise SparsifyError(
                    f"the zeros of weight {name} {list(W.shape)} do not form pattern {pat.short()}: {reason}",
                    where=where,
                    hint=f"add `sparsity:` to this rule to prune {name} to {pat.short()}"
                         + (f" (sparsity: {1 - pat.n / pat.m:g})" if pat.kind == "nm" else "")
                         + ", or choose the pattern its zeros have (see `sparsify-onnx inspect MODEL`)")
            P = W
            pruned = False
        after = _density(P)
        selections[name] = Selection(tensor=name, rule=rule, consumers=cons, pattern=pat, reduction_axis=ax,
                                     density_before=before, density_after=after, pruned=pruned, dynamic=False)
        full = np.ones(W.shape, dtype=bool)
        tesas[name] = TeSA(name=name, shape=tuple(W.shape), nonzero=(P != 0), used=full, pattern=pat,
                           dynamic=False,
                           declared_density=(1.0 - rule.sparsity) if rule.sparsity is not None else after)

    new_loaded = _pruned_copy(loaded, new_weights)
    return Annotated(source=loaded, loaded=new_loaded, spec=spec, selections=selections, tesas=tesas,
                     excluded_nodes=excluded_nodes, rule_matches=rule_matches,
                     excluded_tensors=set(excluded_tensors))


def _pruned_copy(loaded: Loaded, new_weights: dict[str, np.ndarray]) -> Loaded:
    model = onnx.ModelProto()
    model.CopyFrom(loaded.model)
    for name, arr in new_weights.items():
        if name in loaded.initializer_names:
            replace_initializer(model, name, arr)
        elif not _replace_constant(model, name, arr):  # pragma: no cover - weights come from one of the two
            raise AssertionError(f"weight {name} is neither an initializer nor a Constant output")
    lo = index_model(model, path=None, sha256=None, infer_shapes=False)
    for k, v in loaded.shapes.items():
        lo.shapes.setdefault(k, v)
    for k, v in loaded.dtypes.items():
        lo.dtypes.setdefault(k, v)
    return lo


def prune_model(loaded: Loaded, spec: Spec) -> onnx.ModelProto:
    """The pruned dense model (selected weights replaced by their pruned values)."""
    return annotate(loaded, spec).loaded.model
