"""The fixpoint engine: TeSA facts from the seeds to every tensor.

Every tensor gets a TeSA (seeds from annotate; dense otherwise, with the actual
zeros of constant tensors as `nonzero` facts). A worklist runs each node's rule
(forward and backward in one call) until no mask changes. Masks only lose bits,
so it terminates.

A tensor read by several nodes is *used* where any of them uses it: the engine
keeps each consumer's latest `used` contribution and narrows the tensor to their
union (graph outputs and values read inside subgraphs are always used).
"""
from __future__ import annotations

import copy
import time
from collections import deque

import numpy as np
import onnx

from ..tesa import TeSA
from .context import RuleContext
from .folding import fold_constants
from .masks import to_rank
from .registry import lookup
from .symbolic import mono_array

_STRUCTURAL = {"Constant"}  # ops whose outputs are fully described by folding


def _subgraph_refs(graph: onnx.GraphProto) -> set[str]:
    """Names read inside subgraphs (If/Loop/Scan bodies) from the outer scope."""
    refs: set[str] = set()

    def walk(g: onnx.GraphProto, outer_defined: bool):
        local = {i.name for i in g.input} | {i.name for i in g.initializer}
        for n in g.node:
            local.update(o for o in n.output if o)
        for n in g.node:
            if outer_defined:
                refs.update(i for i in n.input if i and i not in local)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g, True)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg, True)
        if outer_defined:
            refs.update(o.name for o in g.output if o.name not in local)

    walk(graph, False)  # the main graph's own names are not outer references; its subgraphs' are
    return refs


def narrow(t: TeSA, *, nonzero=None, used=None, by=None) -> bool:
    """TeSA.narrow, keeping 0-d masks 0-d (np.ascontiguousarray in tesa._compact makes them 1-d)."""
    r = len(t.mask_shape)
    # cheap test on the compact masks first: most rule applications add nothing new
    if nonzero is not None and np.all(to_rank(nonzero, r) | ~to_rank(t.nonzero, r)):
        nonzero = None
    if used is not None and np.all(to_rank(used, r) | ~to_rank(t.used, r)):
        used = None
    if nonzero is None and used is None:
        return False
    changed = t.narrow(nonzero=nonzero, used=used, by=by)
    if not t.mask_shape:
        t.nonzero = np.asarray(t.nonzero, dtype=bool).reshape(())
        t.used = np.asarray(t.used, dtype=bool).reshape(())
    return changed


class Engine:
    def __init__(self, annotated, *, infer_rules: bool = False):
        self.annotated = annotated
        self.loaded = lo = annotated.loaded
        self.graph = g = lo.model.graph
        self.infer_rules = infer_rules
        self.log: list[str] = []
        self.nodes = list(g.node)
        self.node_names = [lo.node_name(n) for n in self.nodes]
        self.opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in lo.model.opset_import}
        self.consumers: dict[str, list[tuple[int, int]]] = {}
        self.producer: dict[str, int] = {}
        for k, n in enumerate(self.nodes):
            for i, name in enumerate(n.input):
                if name:
                    self.consumers.setdefault(name, []).append((k, i))
            for name in n.output:
                if name:
                    self.producer[name] = k
        self.graph_outputs = {o.name for o in g.output}
        self.always_used = self.graph_outputs | _subgraph_refs(g)
        self.contrib: dict[str, dict[tuple[int, int], np.ndarray]] = {}
        t0 = time.perf_counter()
        self.consts, self.syms = fold_constants(g, lo.weights, lo.shapes, self.opsets.get("", 0))
        self.fold_s = time.perf_counter() - t0
        self.tesas: dict[str, TeSA] = {}
        self._init_tesas()
        self.iterations = 0
        self.unknown_ops: list[str] = []

    # ---- setup ------------------------------------------------------------------
    def shape_of(self, name: str):
        return self.loaded.shapes.get(name)

    def symbolic_value(self, name: str):
        if name in self.syms:
            return self.syms[name]
        v = self.consts.get(name)
        if v is not None and v.dtype.kind in "iu" and v.size <= 1 << 16:
            return mono_array(v.tolist())
        return None

    def _names(self) -> list[str]:
        names: list[str] = []
        seen = set()
        for vi in self.graph.input:
            if vi.name not in seen:
                seen.add(vi.name); names.append(vi.name)
        for init in self.graph.initializer:
            if init.name not in seen:
                seen.add(init.name); names.append(init.name)
        for n in self.nodes:
            for name in list(n.input) + list(n.output):
                if name and name not in seen:
                    seen.add(name); names.append(name)
        return names

    def _init_tesas(self) -> None:
        seeds = self.annotated.tesas or {}
        for name in self._names():
            if name in seeds:
                t = copy.deepcopy(seeds[name])
            else:
                t = TeSA.dense(name, self.loaded.shapes.get(name))
            val = self.consts.get(name)
            if val is not None and val.dtype.kind in "fiub" and val.size and \
                    t.mask_shape == tuple(val.shape):
                narrow(t, nonzero=val != 0)
            if name not in self.consumers and name not in self.always_used:
                narrow(t, used=np.zeros(t.mask_shape, dtype=bool), by="no consumer")
            self.tesas[name] = t

    # ---- writes (called through RuleContext) ------------------------------------
    def narrow_nonzero(self, name: str, mask: np.ndarray, by: str) -> bool:
        return narrow(self.tesas[name], nonzero=mask, by=by)

    def narrow_used(self, name: str, key: tuple[int, int], mask: np.ndarray, by: str) -> bool:
        t = self.tesas[name]
        if mask.all():
            return False
        contribs = self.contrib.setdefault(name, {})
        r = len(t.mask_shape)
        old = contribs.get(key)
        contribs[key] = to_rank(mask, r) if old is None else (to_rank(old, r) & to_rank(mask, r))
        if name in self.always_used:
            return False
        keys = self.consumers.get(name, [])
        if any(k not in contribs for k in keys):
            return False  # some consumer still uses everything
        union = None
        for k in keys:
            union = contribs[k] if union is None else (union | contribs[k])
        return narrow(t, used=union, by=by)

    # ---- the fixpoint -----------------------------------------------------------
    def run(self, enabled: bool = True) -> None:
        if not enabled:
            return
        rules = []
        for k, n in enumerate(self.nodes):
            dom = "" if n.domain in ("", "ai.onnx") else n.domain
            entry = lookup(n.op_type, dom, self.opsets.get(dom))
            if entry is None and n.op_type not in _STRUCTURAL:
                self.unknown_ops.append(f"{self.node_names[k]} ({n.op_type})")
            rules.append(entry)
        if self.infer_rules:
            from .scramble import scramble_rule
            for k, n in enumerate(self.nodes):
                if rules[k] is None and n.op_type not in _STRUCTURAL:
                    fn = scramble_rule(self, k)
                    if fn is not None:
                        from .registry import RuleEntry
                        rules[k] = RuleEntry(n.domain, n.op_type, 1, fn)
        queue = deque(range(len(self.nodes)))
        queued = set(queue)
        while queue:
            k = queue.popleft()
            queued.discard(k)
            entry = rules[k]
            if entry is None:
                continue
            n = self.nodes[k]
            dom = "" if n.domain in ("", "ai.onnx") else n.domain
            ctx = RuleContext(self, k, n, entry.name, self.opsets.get(dom, 0))
            self.iterations += 1
            try:
                entry.fn(ctx)
            except Exception as e:  # a failing rule must never make the result unsound
                self.log.append(f"{self.node_names[k]}: rule {entry.name} failed ({type(e).__name__}: {e}); "
                                "facts it wrote before failing are kept (each is sound on its own)")
            for name in ctx.changed:
                nb = [c for c, _ in self.consumers.get(name, [])]
                if name in self.producer:
                    nb.append(self.producer[name])
                for j in nb:
                    if j not in queued:
                        queued.add(j)
                        queue.append(j)
