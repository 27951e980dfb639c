"""Which tensors a spec rule selects, and each weight's stored layout.

Selector semantics (DESIGN.md "The spec"):

- ``{tensor: GLOB}``: fnmatch (case-sensitive) over the graph's tensor names.
  Without ``dynamic`` only weights match (initializers and Constant outputs);
  with ``dynamic: true`` every value does (graph inputs, node outputs, weights).
- ``{node: GLOB, op: OP, input: I}`` / ``{op: OP, input: I}``: the nodes of the
  main graph whose name matches GLOB (unnamed nodes are called
  ``OpType:first_output``) and whose op_type is OP; the tensor is their input I,
  by default the weight input of MatMul (1), Gemm (1, B) and Conv (1). The
  input must be a weight unless the rule is ``dynamic``.
- ``exclude`` entries: a tensor glob removes those tensors; a node/op selector
  removes every tensor fed into a matched node (only input I when given). A
  weight shared with an excluded node is left alone as a whole, since pruning it
  would change the excluded node.
"""
from __future__ import annotations

import difflib
import fnmatch

import onnx

from ..errors import SparsifyError
from ..graph import WEIGHT_INPUT, Loaded
from ..spec import Rule, Selector, Spec


def glob_match(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def reduction_axis(node: onnx.NodeProto, index: int, ndim: int) -> int | None:
    """The axis of input `index` that `node` sums over (None: not a product operand)."""
    op = node.op_type
    if op == "MatMul":
        if index == 1:
            return max(ndim - 2, 0)
        if index == 0:
            return max(ndim - 1, 0)
    if op == "Gemm":
        if index == 1:
            return 1 if _attr(node, "transB", 0) else 0
        if index == 0:
            return 0 if _attr(node, "transA", 0) else 1
    if op == "Conv" and index == 1:
        return 1  # W[O, I/g, kh, kw]: sums over axes 1.. (input channels and the kernel window)
    if op == "ConvTranspose" and index == 1:
        return 0  # W[I, O/g, kh, kw]
    return None


def stored_layout(node: onnx.NodeProto, index: int, ndim: int) -> str:
    """Human text for the stored layout of input `index` of `node`, e.g. "[K, N] (MatMul B)"."""
    op = node.op_type
    if op == "MatMul" and ndim >= 2:
        lead = "..., " if ndim > 2 else ""
        return f"[{lead}K, N] (MatMul B)" if index == 1 else f"[{lead}M, K] (MatMul A)"
    if op == "Gemm":
        if index == 1:
            return "[N, K] (Gemm B, transB=1)" if _attr(node, "transB", 0) else "[K, N] (Gemm B)"
        if index == 0:
            return "[K, M] (Gemm A, transA=1)" if _attr(node, "transA", 0) else "[M, K] (Gemm A)"
        if index == 2:
            return "[N] (Gemm C)"
    if op in ("Conv", "ConvTranspose") and index == 1 and ndim >= 3:
        sp = {3: "k", 4: "kh, kw", 5: "kd, kh, kw"}.get(ndim, ", ".join(f"k{i}" for i in range(ndim - 2)))
        return f"[O, I/g, {sp}]" if op == "Conv" else f"[I, O/g, {sp}] (ConvTranspose)"
    if op == "Gather" and index == 0 and ndim == 2:
        return "[V, D] (Gather table)"
    return f"{ndim}-D ({op} input {index})"


def all_value_names(loaded: Loaded) -> list[str]:
    g = loaded.graph
    names: dict[str, None] = {}
    for vi in g.input:
        names[vi.name] = None
    for n in loaded.weights:
        names[n] = None
    for node in g.node:
        for o in node.output:
            if o:
                names[o] = None
    return list(names)


def _closest(pattern: str, names, n: int = 3) -> list[str]:
    names = list(names)
    if not names:
        return []
    key = pattern.replace("*", "").replace("?", "")
    out = difflib.get_close_matches(key, names, n=n, cutoff=0.3)
    if not out:
        out = difflib.get_close_matches(pattern, names, n=n, cutoff=0.3)
    return out


class Match:
    """What one selector matched: tensor -> [(node name, input index)] and why others did not."""

    def __init__(self):
        self.tensors: dict[str, list[tuple[str, int]]] = {}
        self.nodes: list[str] = []
        self.skipped: list[str] = []  # "node (op): reason"
        self.activations: list[str] = []  # tensor glob hits that are not weights


def match_selector(loaded: Loaded, sel: Selector, dynamic: bool, *, for_exclude: bool = False) -> Match:
    m = Match()
    if sel.tensor is not None:
        for name in all_value_names(loaded):
            if not glob_match(name, sel.tensor):
                continue
            if not (dynamic or for_exclude or loaded.is_weight(name)):
                m.activations.append(name)
                continue
            m.tensors[name] = [(loaded.node_name(n), i) for n, i in loaded.consumers.get(name, [])]
        return m
    for node in loaded.graph.node:
        nname = loaded.node_name(node)
        if sel.node is not None and not glob_match(nname, sel.node):
            continue
        if sel.op is not None and node.op_type != sel.op:
            continue
        m.nodes.append(nname)
        if for_exclude and sel.input is None:
            for i, t in enumerate(node.input):
                if t:
                    m.tensors.setdefault(t, []).append((nname, i))
            continue
        idx = sel.input if sel.input is not None else WEIGHT_INPUT.get(node.op_type)
        if idx is None:
            m.skipped.append(f"{nname} ({node.op_type}): no default weight input, give `input:`")
            continue
        if idx >= len(node.input) or not node.input[idx]:
            m.skipped.append(f"{nname} ({node.op_type}): has no input {idx}")
            continue
        t = node.input[idx]
        if not (dynamic or for_exclude or loaded.is_weight(t)):
            m.skipped.append(f"{nname} ({node.op_type}): input {idx} ({t}) is not a weight")
            continue
        m.tensors.setdefault(t, []).append((nname, idx))
    return m


def nothing_selected_error(loaded: Loaded, sel: Selector, m: Match, where: str, what: str,
                           dynamic: bool) -> SparsifyError:
    msg = f"{what} selects nothing: {sel.describe()}"
    if sel.tensor is not None:
        if m.activations:
            shown = ", ".join(m.activations[:3]) + (" ..." if len(m.activations) > 3 else "")
            hint = (f"it matches only activations ({shown}); add `dynamic: true` to select them, "
                    "or select the weights")
        else:
            pool = all_value_names(loaded) if dynamic else list(loaded.weights)
            close = _closest(sel.tensor, pool)
            hint = ("closest tensor names: " + ", ".join(close)) if close else \
                "no similar tensor names; run `sparsify-onnx inspect MODEL` to list the weights"
        return SparsifyError(msg, where=where, hint=hint)
    if not m.nodes:
        node_names = [loaded.node_name(n) for n in loaded.graph.node]
        if sel.node is not None:
            if sel.op is not None:
                same_op = [loaded.node_name(n) for n in loaded.graph.node if n.op_type == sel.op]
                close = _closest(sel.node, same_op) or _closest(sel.node, node_names)
            else:
                close = _closest(sel.node, node_names)
            hint = ("closest node names: " + ", ".join(close)) if close else \
                "no similar node names; run `sparsify-onnx inspect MODEL` to list them"
            if sel.op is not None and not any(n.op_type == sel.op for n in loaded.graph.node):
                ops = sorted({n.op_type for n in loaded.graph.node})
                hint = f"the model has no {sel.op} node (op types: {', '.join(ops)}); " + hint
        else:
            ops = sorted({n.op_type for n in loaded.graph.node})
            close = difflib.get_close_matches(sel.op or "", ops, n=3, cutoff=0.6)
            hint = f"the model has no {sel.op} node; " + \
                (f"closest op types: {', '.join(close)}" if close else f"op types: {', '.join(ops)}")
        return SparsifyError(msg, where=where, hint=hint)
    shown = "; ".join(m.skipped[:2]) + (f"; and {len(m.skipped) - 2} more" if len(m.skipped) > 2 else "")
    hint = (f"{len(m.nodes)} node(s) match but none gives a tensor: {shown}. "
            "An index selector matches only weights (initializers or Constant outputs) unless the rule "
            "has `dynamic: true`")
    return SparsifyError(msg, where=where, hint=hint)


def select(loaded: Loaded, spec: Spec):
    """Apply the rules in order (a later rule wins per tensor) and the exclusions.

    Returns (winners, rule_matches, excluded_nodes, excluded_tensors):
    winners: tensor -> (rule, consumers through which it was selected);
    rule_matches: rule index -> tensors the rule matched (before overrides and exclusions).
    """
    winners: dict[str, tuple[Rule, list[tuple[str, int]]]] = {}
    rule_matches: dict[int, list[str]] = {}
    for rule in spec.rules:
        m = match_selector(loaded, rule.select, rule.dynamic)
        if not m.tensors:
            raise nothing_selected_error(loaded, rule.select, m, spec.rule_where(rule), f"rule {rule.index}",
                                         rule.dynamic)
        rule_matches[rule.index] = list(m.tensors)
        for t, cons in m.tensors.items():
            winners[t] = (rule, cons)

    excluded_nodes: set[str] = set()
    excluded_tensors: set[str] = set()
    excluded_pairs: set[tuple[str, int]] = set()
    for i, sel in enumerate(spec.exclude):
        m = match_selector(loaded, sel, True, for_exclude=True)
        if not m.tensors and not m.nodes:
            raise nothing_selected_error(loaded, sel, m, spec.exclude_where(i), f"exclude {i + 1}", True)
        if sel.tensor is not None:
            excluded_tensors.update(m.tensors)
        else:
            excluded_nodes.update(m.nodes)
            for cons in m.tensors.values():
                excluded_pairs.update(cons)
    dropped = set()
    for t in winners:
        if t in excluded_tensors:
            dropped.add(t)
            continue
        for node, idx in loaded.consumers.get(t, []):
            if (loaded.node_name(node), idx) in excluded_pairs:
                dropped.add(t)
                break
    for t in dropped:
        del winners[t]
    return winners, rule_matches, excluded_nodes, dropped
