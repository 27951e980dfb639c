"""Channel compaction: remove rows/columns/channels that are dead across a chain.

`compact(propagated) -> CompactResult` builds a smaller *dense* model from the
propagated live masks only (it never reaches back into annotate or the spec).

How: every concrete axis of every tensor is a *slot*. Each node links the slots
that must shrink together (MatMul: A's K axis with W's rows, W's columns with the
output's last axis; Conv: W's output channels with the bias and the output's
channels; elementwise ops and activations: equal axes of operands and result;
BatchNorm: the channel axis with its four parameter vectors; Transpose: permuted
axes; Reshape: equal axes, and a split/merged axis as the product of the others,
e.g. hidden 768 = heads 12 x head_dim 64). A slot a node does not link is
*blocked*: graph inputs and outputs, LayerNorm's normalised axes, Softmax's axis,
a residual Add with a graph input, anything read by Shape, any op without a
handler. Groups are found with union-find; a group removes the indices dead (not
live) in every member, unless a member is blocked. A split axis (heads x dim)
removes whole heads (or the same dim in every head) only.

Before that (``fold_constants=True``), a channel that is constant for every input -- a dead
weight column whose bias entry is live, e.g. an FFN1 output channel pruned without its bias --
is folded into the next layer's bias (``b2 += f(b1[c]) * W2[c, :]``, ``b1[c] = 0``), and the
model is propagated again, so the channel becomes dead and is removed too.

Afterwards weight elements that are non-zero but not live are set to zero, so the
rewritten weights' zeros equal liveness (only for initializers read solely by
MatMul/Gemm/Conv/Add/Sub/Mul/BatchNorm/LayerNorm, where a zero cannot make inf/NaN).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import with_new_values
from ..propagate.symbolic import dims_monos, reshape_groups

Slot = tuple  # (tensor name, axis)

_UNARY = {"Relu", "Gelu", "Erf", "Tanh", "Neg", "Abs", "Sqrt", "LeakyRelu", "Identity", "Cast", "Sigmoid",
          "Exp", "Sin", "Cos", "Softsign", "Selu", "Elu", "Celu", "HardSwish", "HardSigmoid", "Mish", "Softplus",
          "Floor", "Ceil", "Round", "Sign", "Reciprocal", "Log", "Dropout", "Clip", "FastGelu", "QuickGelu",
          "ThresholdedRelu"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "PRelu", "Max", "Min", "Sum", "Mean", "Equal", "Less",
           "Greater", "And", "Or"}
_POOL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool"}
_SAFE_ZERO_CONSUMERS = {"MatMul", "Gemm", "Conv", "Add", "Sub", "Mul", "BatchNormalization",
                        "LayerNormalization"}


@dataclass
class CompactResult:
    model: onnx.ModelProto  # the smaller dense model
    removed: dict[str, dict] = field(default_factory=dict)  # initializer -> {axis: [removed indices]}
    stats: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    folded: dict[str, list[int]] = field(default_factory=dict)  # bias -> channels folded into the next bias
    propagated: object = None  # the re-propagated value when channels were folded (else None)


class _UF:
    def __init__(self):
        self.p: dict = {}

    def find(self, x):
        p = self.p
        p.setdefault(x, x)
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[ra] = rb


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Planner:
    def __init__(self, propagated):
        self.p = propagated
        self.lo = propagated.annotated.loaded
        self.model = self.lo.model
        self.g = self.model.graph
        self.uf = _UF()
        self.blocked: set = set()
        self.handled: set = set()
        self.relations: list[tuple[Slot, list[Slot]]] = []  # (product slot, factor slots in row-major order)
        self.reshape_edits: list[tuple[onnx.NodeProto, int, Slot, str]] = []  # (node, pos, out slot, kind)
        self.depthwise: list[tuple[onnx.NodeProto, Slot]] = []
        self.log: list[str] = []
        self.keeps_sizes = False  # True for a planner of orders (transform/permute.py): reshape targets stay valid
        self.consts = {}
        from ..propagate.folding import fold_constants
        opset = self.lo.opset("")
        self.consts, self.syms = fold_constants(self.g, self.lo.weights, self.lo.shapes, opset)
        self.opset = opset

    # ---- helpers -------------------------------------------------------------------
    def dims(self, name):
        return self.lo.shapes.get(name)

    def size(self, slot):
        d = self.dims(slot[0])
        if d is None or slot[1] >= len(d):
            return None
        v = d[slot[1]]
        return int(v) if isinstance(v, (int, np.integer)) and v > 0 else None

    def link(self, a: Slot, b: Slot):
        sa, sb = self.size(a), self.size(b)
        if sa is None or sb is None or sa != sb:
            return
        self.uf.union(a, b)
        self.handled.add(a)
        self.handled.add(b)

    def ok(self, slot: Slot):
        self.handled.add(slot)

    def slots_of(self, name):
        d = self.dims(name)
        return [] if d is None else [(name, a) for a in range(len(d))]

    # ---- per-node handlers ----------------------------------------------------------
    def visit(self, node):
        op = node.op_type
        self.handled = set()
        names = [n for n in list(node.input) + list(node.output) if n]
        try:
            if op in _UNARY or op in _BINARY:
                self._elementwise(node)
            elif op == "MatMul":
                self._matmul(node)
            elif op == "Gemm":
                self._gemm(node)
            elif op == "Conv":
                self._conv(node)
            elif op == "BatchNormalization":
                self._bn(node)
            elif op in _POOL:
                self._pool(node)
            elif op == "Transpose":
                self._transpose(node)
            elif op in ("Reshape", "Flatten"):
                self._reshape(node)
            elif op in ("Softmax", "LogSoftmax", "LayerNormalization"):
                self._norm(node)
        except Exception as e:  # a handler that cannot decide blocks everything it touches
            self.log.append(f"{node.name or node.op_type}: compaction handler failed ({e}); blocked")
            self.handled = set()
        self.block_unhandled(names)

    def block_unhandled(self, names):
        """Block every slot of `names` the last handler (since `handled` was reset) did not link or mark ok."""
        for n in names:
            for s in self.slots_of(n):
                if s not in self.handled:
                    self.blocked.add(s)

    def _elementwise(self, node):
        out = node.output[0]
        do = self.dims(out)
        if do is None:
            return
        r = len(do)
        for i in node.input:
            if not i:
                continue
            di = self.dims(i)
            if di is None:
                continue
            for a in range(len(di)):
                oa = a + r - len(di)
                if oa < 0:
                    continue
                if di[a] == 1 and do[oa] != 1:
                    self.ok((i, a))  # broadcast: nothing to shrink
                else:
                    self.link((i, a), (out, oa))
        for o in node.output[1:]:
            if o and self.dims(o) is not None and len(self.dims(o)) == r:
                for a in range(r):
                    self.link((o, a), (out, a))

    def _matmul(self, node):
        a, b, o = node.input[0], node.input[1], node.output[0]
        da, db, do = self.dims(a), self.dims(b), self.dims(o)
        if da is None or db is None or do is None or len(da) < 2 or len(db) < 2:
            return
        ra, rb, ro = len(da), len(db), len(do)
        self.link((a, ra - 1), (b, rb - 2))
        self.link((a, ra - 2), (o, ro - 2))
        self.link((b, rb - 1), (o, ro - 1))
        for k in range(ro - 2):
            for t, d in ((a, da), (b, db)):
                ax = k - (ro - len(d))
                if ax < 0:
                    continue
                if d[ax] == 1 and do[k] != 1:
                    self.ok((t, ax))
                else:
                    self.link((t, ax), (o, k))

    def _gemm(self, node):
        at = _attrs(node)
        a, b, o = node.input[0], node.input[1], node.output[0]
        if self.dims(a) is None or self.dims(b) is None or self.dims(o) is None:
            return
        ta, tb = int(at.get("transA", 0)), int(at.get("transB", 0))
        m_a, k_a = (1, 0) if ta else (0, 1)
        k_b, n_b = (1, 0) if tb else (0, 1)
        self.link((a, k_a), (b, k_b))
        self.link((a, m_a), (o, 0))
        self.link((b, n_b), (o, 1))
        if len(node.input) > 2 and node.input[2]:
            c = node.input[2]
            dc = self.dims(c)
            if dc is not None:
                for ax in range(len(dc)):
                    oa = ax + 2 - len(dc)
                    if dc[ax] == 1 and self.dims(o)[oa] != 1:
                        self.ok((c, ax))
                    else:
                        self.link((c, ax), (o, oa))

    def _conv(self, node):
        x, w, o = node.input[0], node.input[1], node.output[0]
        dx, dw = self.dims(x), self.dims(w)
        if dx is None or dw is None or self.dims(o) is None:
            return
        group = int(_attrs(node).get("group", 1))
        self.link((x, 0), (o, 0))
        for ax in range(2, len(dw)):
            self.ok((w, ax))
        if group == 1:
            self.link((x, 1), (w, 1))
            self.link((o, 1), (w, 0))
        elif dw[1] == 1 and group == dx[1] == dw[0]:
            self.link((x, 1), (o, 1))
            self.link((o, 1), (w, 0))
            self.ok((w, 1))
            self.depthwise.append((node, (o, 1)))
        if len(node.input) > 2 and node.input[2]:
            self.link((node.input[2], 0), (o, 1))

    def _bn(self, node):
        if len([o for o in node.output if o]) > 1:
            return
        x, y = node.input[0], node.output[0]
        dx = self.dims(x)
        if dx is None:
            return
        for ax in range(len(dx)):
            self.link((x, ax), (y, ax))
        for p in node.input[1:5]:
            self.link((p, 0), (y, 1))

    def _pool(self, node):
        if len([o for o in node.output if o]) > 1:
            return
        x, y = node.input[0], node.output[0]
        self.link((x, 0), (y, 0))
        self.link((x, 1), (y, 1))

    def _transpose(self, node):
        x, y = node.input[0], node.output[0]
        dx = self.dims(x)
        if dx is None:
            return
        perm = _attrs(node).get("perm") or list(reversed(range(len(dx))))
        for i, p in enumerate(perm):
            self.link((x, p), (y, i))

    def _norm(self, node):
        x, y = node.input[0], node.output[0]
        dx = self.dims(x)
        if dx is None:
            return
        r = len(dx)
        at = _attrs(node)
        if node.op_type == "LayerNormalization":
            keep = range(int(at.get("axis", -1)) % r)
        elif self.opset >= 13:
            ax = int(at.get("axis", -1)) % r
            keep = [a for a in range(r) if a != ax]
        else:
            keep = range(int(at.get("axis", 1)) % r)
        for a in keep:
            self.link((x, a), (y, a))

    def _reshape(self, node):
        x, y = node.input[0], node.output[0]
        dx, dy = self.dims(x), self.dims(y)
        if dx is None or dy is None:
            return
        if not all(isinstance(d, (int, np.integer)) and d > 0 for d in list(dx) + list(dy)):
            # symbolic dims: relate only through monomials; channel groups need concrete sizes
            pass
        groups = reshape_groups(dims_monos(dx), dims_monos(dy))
        if groups is None:
            return
        target = None
        if node.op_type == "Reshape" and not self.keeps_sizes:  # (compaction edits the target; an order does not)
            target = self._target_entries(node)
            if target is None:
                return
        for gi, gj in groups:
            gi2 = [a for a in gi if dx[a] != 1]
            gj2 = [b for b in gj if dy[b] != 1]
            for a in gi:
                if dx[a] == 1:
                    self.ok((x, a))
            for b in gj:
                if dy[b] == 1:
                    self.ok((y, b))
            if not gi2 or not gj2:
                continue
            if target is not None:
                # every target entry of a shrinking out axis must be editable (or 0 copying the same group, or -1)
                def editable(b, partner=None):
                    kind = target[b][0]
                    if kind in ("neg", "const"):
                        return True
                    if kind == "zero":
                        return partner is not None and partner == b
                    return False
            else:
                def editable(b, partner=None):
                    return True
            if len(gi2) == 1 and len(gj2) == 1:
                if editable(gj2[0], gi2[0]):
                    self.link((x, gi2[0]), (y, gj2[0]))
                    if target is not None:
                        self.reshape_edits.append((node, gj2[0], (y, gj2[0]), "plain"))
            elif len(gi2) == 1 and all(editable(b) for b in gj2):
                if self.size((x, gi2[0])) is None or any(self.size((y, b)) is None for b in gj2):
                    continue
                self.ok((x, gi2[0]))
                for b in gj2:
                    self.ok((y, b))
                self.relations.append(((x, gi2[0]), [(y, b) for b in gj2]))
                if target is not None:
                    for b in gj2:
                        self.reshape_edits.append((node, b, (y, b), "plain"))
            elif len(gj2) == 1 and editable(gj2[0]):
                if self.size((y, gj2[0])) is None or any(self.size((x, a)) is None for a in gi2):
                    continue
                self.ok((y, gj2[0]))
                for a in gi2:
                    self.ok((x, a))
                self.relations.append(((y, gj2[0]), [(x, a) for a in gi2]))
                if target is not None:
                    self.reshape_edits.append((node, gj2[0], (y, gj2[0]), "plain"))

    def _target_entries(self, node):
        """For each target position: ('const', const_name, index) | ('zero',) | ('neg',) | ('other',)."""
        if self.opset < 5 or len(node.input) < 2:
            return None
        shp = node.input[1]
        allowzero = int(_attrs(node).get("allowzero", 0))
        entries = self._locate(shp)
        if entries is None:
            return None
        out = []
        for e in entries:
            if e[0] == "const":
                v = int(np.asarray(self.consts[e[1]]).reshape(-1)[e[2]])
                if v == 0 and not allowzero:
                    out.append(("zero",))
                elif v == -1:
                    out.append(("neg",))
                else:
                    out.append(e)
            else:
                out.append(("other",))
        return out

    def _locate(self, name, depth=0):
        """Where each element of a 1-D shape tensor comes from."""
        if depth > 8:
            return None
        if name in self.lo.initializer_names or (name in self.lo.producer and
                                                 self.lo.producer[name].op_type == "Constant"):
            v = self.consts.get(name)
            if v is None:
                return None
            return [("const", name, k, None) for k in range(np.asarray(v).size)]
        prod_node = self.lo.producer.get(name)
        if prod_node is None:
            return None
        if prod_node.op_type == "Concat":
            out = []
            for i in prod_node.input:
                sub = self._locate(i, depth + 1)
                if sub is not None:
                    # constants read directly by this Concat are edited (cloned) for this Concat
                    sub = [(e[0], e[1], e[2], prod_node.output[0] if e[3] is None else e[3]) if e[0] == "const"
                           else e for e in sub]
                if sub is None:
                    sv = self.syms.get(i)
                    cv = self.consts.get(i)
                    n = (sv.size if sv is not None else (np.asarray(cv).size if cv is not None else None))
                    if n is None:
                        return None
                    sub = [("other",)] * n
                out.extend(sub)
            return out
        return None
        return None


def compact(propagated, *, fold_constants: bool = True, align: int = 1) -> "CompactResult":
    """Remove dead channels; return a smaller dense model (see module docstring).

    fold_constants: first fold channels that are constant (a dead weight column with a live bias)
    into the next layer's bias (`fold_constant_channels`), then propagate again and compact.
    align: keep a multiple of `align` channels in every plain channel group (a few dead channels stay, as
    zeros). 8 for CUDA: fp16 GEMMs whose dimensions are not multiples of 8 leave cuBLAS's tensor-core
    kernels (measured on the H200: BERT FFN compacted to 2507 channels made the engine 0.80x of dense).
    """
    folded: dict = {}
    if fold_constants and getattr(propagated, "enabled", True):
        new_model, folded, edits = _fold(propagated)
        if new_model is not None:
            import dataclasses

            from ..propagate import propagate
            an = propagated.annotated
            new_lo = with_new_values(an.loaded, new_model, edits)
            propagated = propagate(dataclasses.replace(an, loaded=new_lo), enabled=True)
    result = _compact(propagated, align)
    result.stats["folded_constant_channels"] = {k: len(v) for k, v in folded.items()}
    result.folded = folded
    if folded:
        result.stats["propagation_after_folding"] = {
            "linear_weights": propagated.stats.get("linear_weights"), "macs": {
                k: v for k, v in (propagated.stats.get("macs") or {}).items() if k != "per_node"}}
        result.propagated = propagated
    return result


def _compact(propagated, align: int = 1) -> "CompactResult":
    pl = _Planner(propagated)
    lo = pl.lo
    g = pl.g
    tesas = propagated.tesas
    for node in g.node:
        pl.visit(node)
    for vi in list(g.input) + list(g.output):
        for s in pl.slots_of(vi.name):
            pl.blocked.add(s)
    extra: set = set()
    for _ in range(6):
        removal, sizes, members = _removals(pl, tesas, frozenset(extra), align)
        edits, bad_slots = _plan_edits(pl, removal)
        if not bad_slots:
            break
        extra.update(bad_slots)
    else:
        return CompactResult(model=copy.deepcopy(lo.model), removed={},
                             stats={"compacted": False, "reason": "conflicting reshape target edits"},
                             log=pl.log + ["compaction skipped: conflicting reshape target edits"])

    # ---- rewrite ---------------------------------------------------------------------
    model = copy.deepcopy(lo.model)
    mg = model.graph
    removed: dict[str, dict] = {}

    def slot_removal(s):
        return _slot_removal(pl, removal, s)

    inits = {t.name: t for t in mg.initializer}
    arrays = {}
    for name in inits:
        arr = lo.weights[name]
        d = lo.shapes.get(name, arr.shape)
        changed = False
        for ax in range(arr.ndim):
            rm = slot_removal((name, ax))
            if rm is not None and len(rm):
                arr = np.delete(arr, rm, axis=ax)
                removed.setdefault(name, {})[ax] = [int(i) for i in rm]
                changed = True
        arrays[name] = (arr, changed)
        del d
    # zero non-live elements of weights (safe consumers only)
    zeroed = 0
    for name, (arr, changed) in list(arrays.items()):
        if arr.dtype.kind != "f" or name not in tesas:
            continue
        cons = lo.consumers.get(name, [])
        if not cons or any(n.op_type not in _SAFE_ZERO_CONSUMERS for n, _ in cons):
            continue
        t = tesas[name]
        live = np.broadcast_to(t.live, t.mask_shape)
        if live.shape != lo.weights[name].shape:
            continue
        for ax, rm in removed.get(name, {}).items():
            live = np.delete(live, rm, axis=ax)
        kill = (~live) & (arr != 0)
        if kill.any():
            arr = np.where(live, arr, np.zeros((), arr.dtype)).astype(arr.dtype)
            zeroed += int(kill.sum())
            changed = True
        arrays[name] = (arr, changed)
    for name, (arr, changed) in arrays.items():
        if changed:
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
    # reshape targets: each edited constant is cloned for its reader, so shared constants stay intact
    by_owner: dict = {}
    for (owner, cname, idx), val in edits.items():
        by_owner.setdefault((owner, cname), {})[idx] = val
    node_by_out = {n.output[0]: n for n in mg.node if n.output}
    for k, ((owner, cname), changes) in enumerate(sorted(by_owner.items())):
        src = pl.consts.get(cname)
        if src is None:
            continue
        arr = np.array(src).copy()
        for idx, val in changes.items():
            arr.reshape(-1)[idx] = val
        new_name = f"{cname}__compact{k}"
        mg.initializer.append(numpy_helper.from_array(arr.astype(np.asarray(src).dtype), new_name))
        reader = node_by_out[owner]
        for i, nm in enumerate(reader.input):
            if nm == cname:
                reader.input[i] = new_name
    for node, oslot in pl.depthwise:
        rm = slot_removal(oslot)
        if rm is None:
            continue
        for mn in mg.node:
            if mn.output[0] == node.output[0]:
                for a in mn.attribute:
                    if a.name == "group":
                        a.i = pl.size(oslot) - len(rm)
    # constants no node reads any more (the originals of cloned reshape targets, emptied weights)
    read = {i for n in mg.node for i in n.input} | {o.name for o in mg.output}
    keep = [t for t in mg.initializer if t.name in read]
    if len(keep) != len(mg.initializer):
        del mg.initializer[:]
        mg.initializer.extend(keep)
    # stale shapes: drop intermediate value_info (re-inferred by onnx/onnxruntime)
    del mg.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # keep going: the model is still valid without value_info
        pl.log.append(f"shape inference after compaction failed: {e}")
    before = sum(int(np.prod(lo.weights[n].shape)) for n in inits)
    after = sum(int(np.prod(arrays[n][0].shape)) for n in inits if n in read)
    groups_shrunk = [{"size": int(sizes[r]), "removed": int(len(idx)),
                      "members": sorted({s[0] for s in members.get(r, [r])})[:6]} for r, idx in removal.items()]
    stats = {"compacted": bool(removal), "initializer_elements_before": before, "initializer_elements_after": after,
             "share_removed": 1 - after / before if before else 0.0, "groups_shrunk": len(removal),
             "groups": groups_shrunk, "weights_zeroed_not_live": zeroed, "initializers_changed": len(removed)}
    return CompactResult(model=model, removed=removed, stats=stats, log=pl.log)


def _removals(pl, tesas, extra_blocked=frozenset(), align: int = 1):
    """Group slots, intersect dead sets, resolve head factors: (removal by root, sizes, members, uf)."""
    if True:
# values read inside subgraphs, and tensors without shape info stay untouched (handled by blocking)
        uf = pl.uf
        members: dict = {}
        for s in list(uf.p):
            members.setdefault(uf.find(s), []).append(s)
        sizes = {}
        blocked_roots = set()
        for r, ms in members.items():
            sz = {pl.size(s) for s in ms}
            if len(sz) != 1 or None in sz:
                blocked_roots.add(r)
                continue
            sizes[r] = sz.pop()
            if any(s in pl.blocked or s in extra_blocked for s in ms):
                blocked_roots.add(r)

        def root(s):
            return uf.find(s)

        # slots never linked but not blocked (e.g. a relation factor) are singleton groups
        for d, fs in pl.relations:
            for s in [d] + fs:
                r = root(s)
                if r not in members:
                    members[r] = [s]
                    sz = pl.size(s)
                    if sz is None:
                        blocked_roots.add(r)
                    else:
                        sizes[r] = sz
                    if s in pl.blocked or s in extra_blocked:
                        blocked_roots.add(r)

        def slot_dead(s):
            t = tesas.get(s[0])
            n = pl.size(s)
            if t is None or n is None:
                return np.zeros(n or 0, bool)
            live = t.live
            if live.ndim != len(t.mask_shape):
                return np.zeros(n, bool)
            ax = s[1]
            other = tuple(a for a in range(live.ndim) if a != ax)
            lv = live.any(axis=other) if other else live
            lv = np.broadcast_to(lv.reshape(-1), (n,)) if lv.size in (1, n) else np.ones(n, bool)
            return ~lv

        dead = {}
        for r, ms in members.items():
            if r in blocked_roots or r not in sizes:
                continue
            d = np.ones(sizes[r], bool)
            for s in ms:
                d &= slot_dead(s)
            dead[r] = d

        # relations: product group D = factors F1 x F2 ... (row-major)
        rel_by_d: dict = {}
        factor_roots = set()
        bad = set()
        for d_slot, fs in pl.relations:
            rd = root(d_slot)
            rf = tuple(root(f) for f in fs)
            fsz = tuple(pl.size(f) for f in fs)
            if rd in rel_by_d and rel_by_d[rd] != (rf, fsz):
                bad.add(rd)
            rel_by_d[rd] = (rf, fsz)
            factor_roots.update(rf)
        for rd in list(rel_by_d):
            rf, fsz = rel_by_d[rd]
            if rd in factor_roots or any(f in rel_by_d for f in rf) or len(set(rf)) != len(rf) or \
                    int(np.prod(fsz)) != sizes.get(rd, -1):
                bad.add(rd)
        for rd in bad:
            blocked_roots.add(rd)
            blocked_roots.update(rel_by_d[rd][0])
        removal: dict = {}
        for r in members:
            if r in blocked_roots or r not in dead or r in rel_by_d or r in factor_roots:
                continue
            rm = np.nonzero(dead[r])[0]
            extra_keep = -(sizes[r] - len(rm)) % align  # round the kept count up to a multiple of align
            if extra_keep and sizes[r] % align == 0:
                rm = rm[:len(rm) - extra_keep]
            removal[r] = rm
        # factors
        factor_rm: dict = {}
        for f in factor_roots:
            if f in blocked_roots or f not in dead:
                factor_rm[f] = np.zeros(sizes.get(f, 0), bool)
                continue
            factor_rm[f] = dead[f].copy()
        for rd, (rf, fsz) in rel_by_d.items():
            if rd in blocked_roots or rd not in dead:
                for f in rf:
                    factor_rm[f] = np.zeros(sizes.get(f, 0), bool)
                continue
            dd = dead[rd].reshape(fsz)
            for k, f in enumerate(rf):
                other = tuple(a for a in range(len(fsz)) if a != k)
                proj = dd.all(axis=other) if other else dd
                factor_rm[f] = factor_rm[f] & proj
        for f, rm in factor_rm.items():
            if rm.size and rm.all():
                rm[0] = False  # keep one
            removal[f] = np.nonzero(rm)[0]
        for rd, (rf, fsz) in rel_by_d.items():
            grids = np.meshgrid(*[factor_rm[f] for f in rf], indexing="ij")
            rm = np.zeros(fsz, bool)
            for gmask in grids:
                rm |= gmask
            removal[rd] = np.nonzero(rm.reshape(-1))[0]
        for r in list(removal):
            if r in sizes and len(removal[r]) >= sizes[r]:
                removal[r] = removal[r][1:]  # never remove a whole axis
            if len(removal[r]) == 0:
                del removal[r]
        return removal, sizes, members


def _slot_removal(pl, removal, s):
    if s not in pl.uf.p:
        return None
    return removal.get(pl.uf.find(s))


def _plan_edits(pl, removal):
    """Reshape target edits {(reader output, const name, index): new value}, and slots that cannot be edited."""
    edits: dict = {}
    bad: set = set()
    for node, pos, yslot, _ in pl.reshape_edits:
        rm = _slot_removal(pl, removal, yslot)
        if rm is None or not len(rm):
            continue
        entries = pl._target_entries(node)
        e = entries[pos] if entries is not None and pos < len(entries) else ("other",)
        if e[0] == "const":
            owner = e[3] if e[3] is not None else node.output[0]
            key = (owner, e[1], e[2])
            val = pl.size(yslot) - len(rm)
            if edits.get(key, val) != val:
                bad.add(yslot)
            edits[key] = val
        elif e[0] in ("neg", "zero"):
            continue
        else:
            bad.add(yslot)
    return edits, bad


# ---- constant-channel folding ---------------------------------------------------------------
_FOLD_UNARY = _UNARY - {"Dropout"}
_FOLD_BINARY = {"Add", "Sub", "Mul", "Div", "Pow"}


def fold_constant_channels(propagated):
    """Fold channels that are constant over every input into the next layer's bias.

    Pattern: ``MatMul(X, W1) -> Add(b1) -> elementwise chain f -> MatMul(., W2) -> Add(b2)``
    where column c of the first MatMul's output is known zero (W1[:, c] dead) but b1[c] != 0:
    channel c carries the constant f(b1[c]). It contributes f(b1[c]) * W2[c, :] to every row, so
    b2 += f(b1)[c] * W2[c, :] and b1[c] = 0 are exact (up to float rounding) when f(0)[c] == 0:
    the channel is then zero and propagation marks W2's row c dead.

    Returns (model or None when nothing folds, {bias name: [channels]}).
    """
    model, folded, _ = _fold(propagated)
    return model, folded


def _fold(propagated):
    lo = propagated.annotated.loaded
    tesas = propagated.tesas
    g = lo.model.graph
    inits = lo.initializer_names
    consts = lo.weights
    edits: dict[str, np.ndarray] = {}
    folded: dict[str, list[int]] = {}
    for add in g.node:
        if not ((add.op_type == "Add" and len(add.input) == 2) or add.op_type == "Gemm"):
            continue
        try:
            plan = _fold_plan(lo, tesas, add, inits, consts)
        except Exception:  # a pattern we do not understand is simply not folded
            plan = None
        if plan is None:
            continue
        b1name, cols, chain, h_name, g_name, w2name, b2name, scale, w2_trans, factor = plan
        if b1name in edits or b2name in edits:
            continue
        b1 = consts[b1name].astype(np.float64) * scale  # the constant value of the channel before f
        fb = _eval_chain(lo, chain, h_name, g_name, b1.reshape(1, -1))
        f0 = _eval_chain(lo, chain, h_name, g_name, np.zeros((1, b1.size)))
        if fb is None or f0 is None:
            continue
        fb, f0 = fb.reshape(-1), f0.reshape(-1)
        cols = [c for c in cols if f0[c] == 0 and np.isfinite(fb[c])]
        if not cols:
            continue
        w2 = consts[w2name].astype(np.float64)
        if w2_trans:
            w2 = w2.T
        b2 = consts[b2name].astype(np.float64)
        b2 = b2 + factor * (fb[cols] @ w2[cols, :])
        nb1 = consts[b1name].copy()
        nb1[cols] = 0
        edits[b1name] = nb1
        edits[b2name] = b2.astype(consts[b2name].dtype)
        folded[b1name] = [int(c) for c in cols]
    if not edits:
        return None, {}, {}
    model = copy.deepcopy(lo.model)
    for t in model.graph.initializer:
        if t.name in edits:
            t.CopyFrom(numpy_helper.from_array(edits[t.name], t.name))
    return model, folded, edits


def _fold_start(lo, tesas, node, inits, consts):
    """(bias, constant channels, chain input, scale) for MatMul -> Add(bias) or Gemm(.., C=bias)."""
    if node.op_type == "Gemm":
        at = _attrs(node)
        if len(node.input) < 3 or node.input[2] not in inits or node.input[1] not in inits:
            return None
        bias, w = node.input[2], node.input[1]
        if consts[bias].ndim != 1 or len(lo.consumers.get(bias, [])) != 1 or consts[w].ndim != 2:
            return None
        t = tesas.get(w)
        live = np.broadcast_to(t.live, t.mask_shape)
        if int(at.get("transB", 0)):
            live = live.T
        n = consts[bias].size
        if live.shape[1] != n:
            return None
        zero_cols = np.flatnonzero(~live.any(axis=0))  # the product's column c is zero for every input
        cols = [int(c) for c in zero_cols if consts[bias][c] != 0]
        return (bias, cols, node.output[0], float(at.get("beta", 1.0))) if cols else None
    a, b = node.input
    bias, h0 = (b, a) if b in inits else (a, b) if a in inits else (None, None)
    if bias is None or consts[bias].ndim != 1 or len(lo.consumers.get(bias, [])) != 1:
        return None
    mm = lo.producer.get(h0)
    if mm is None or mm.op_type != "MatMul" or mm.input[1] not in inits or consts[mm.input[1]].ndim != 2:
        return None
    t = tesas.get(h0)
    if t is None:
        return None
    nz = np.broadcast_to(t.nonzero, t.mask_shape)
    n = consts[bias].size
    if nz.shape[-1] != n:
        return None
    zero_cols = np.flatnonzero(~nz.reshape(-1, n).any(axis=0))
    cols = [int(c) for c in zero_cols if consts[bias][c] != 0]
    return (bias, cols, node.output[0], 1.0) if cols else None


def _is_end(node, members, inits):
    if node.op_type == "MatMul":
        return node.input[0] in members and node.input[1] in inits
    if node.op_type == "Gemm":
        at = _attrs(node)
        return (node.input[0] in members and node.input[1] in inits and not int(at.get("transA", 0))
                and len(node.input) > 2 and node.input[2] in inits and float(at.get("beta", 1.0)) != 0.0)
    return False


def _fold_plan(lo, tesas, add, inits, consts):
    start = _fold_start(lo, tesas, add, inits, consts)
    if start is None:
        return None
    bias, cols, h, scale = start
    # walk the elementwise chain from the bias add to a single MatMul/Gemm with a weight (and a bias)
    chain, frontier, members = [], [h], {h}
    end = None
    seen_nodes = set()
    while frontier:
        name = frontier.pop()
        for node, _ in lo.consumers.get(name, []):
            key = id(node)
            if key in seen_nodes:
                continue
            op = node.op_type
            if _is_end(node, members, inits):
                if end is not None and end is not node:
                    return None
                end = node
                seen_nodes.add(key)
                continue
            ok = (op in _FOLD_UNARY and len([i for i in node.input if i]) >= 1) or op in _FOLD_BINARY
            if not ok:
                return None
            for i in node.input:
                if i and i not in members and i not in consts:
                    # the other operand must be produced inside the chain (visited later) or constant
                    prod = lo.producer.get(i)
                    if prod is None:
                        return None
            for i in node.input:
                if i and i in consts and any(d != 1 for d in consts[i].shape[:-1]):
                    return None  # a constant varying along a row axis: the channel is not constant
            seen_nodes.add(key)
            chain.append(node)
            for o in node.output:
                if o:
                    members.add(o)
                    frontier.append(o)
    if end is None or not chain:
        return None
    # every chain node's non-constant inputs must come from the chain
    for node in chain:
        for i in node.input:
            if i and i not in members and i not in consts:
                return None
    # chain outputs other than the MatMul input must be read only inside the chain
    g_name = end.input[0]
    for node in chain:
        for o in node.output:
            if o == g_name:
                continue
            for c, _ in lo.consumers.get(o, []):
                if c not in chain:
                    return None
            if o in {x.name for x in lo.model.graph.output}:
                return None
    if lo.consumers.get(g_name) and len(lo.consumers[g_name]) != 1:
        return None
    w2 = end.input[1]
    if end.op_type == "Gemm":
        at = _attrs(end)
        w2_trans = bool(int(at.get("transB", 0)))
        k2, n2 = consts[w2].shape[::-1] if w2_trans else consts[w2].shape
        b2 = end.input[2]
        factor = float(at.get("alpha", 1.0)) / float(at.get("beta", 1.0))
        if k2 != consts[bias].size or consts[b2].shape != (n2,) or len(lo.consumers.get(b2, [])) != 1:
            return None
    else:
        w2_trans, factor = False, 1.0
        if consts[w2].shape[0] != consts[bias].size:
            return None
        cons = lo.consumers.get(end.output[0], [])
        if len(cons) != 1 or cons[0][0].op_type != "Add":
            return None
        add2 = cons[0][0]
        others = [i for i in add2.input if i != end.output[0]]
        if len(others) != 1 or others[0] not in inits or consts[others[0]].shape != (consts[w2].shape[1],) or \
                len(lo.consumers.get(others[0], [])) != 1:
            return None
        b2 = others[0]
    order = [n for n in lo.model.graph.node if any(n is c for c in chain)]
    return bias, cols, order, h, g_name, w2, b2, scale, w2_trans, factor


def _eval_chain(lo, chain, h_name, g_name, value):
    try:
        from onnx.reference import ReferenceEvaluator
        from onnx import TensorProto
        used_consts = {i for n in chain for i in n.input if i in lo.weights}
        inits = [numpy_helper.from_array(np.asarray(lo.weights[i]).astype(np.float64)
                                         if lo.weights[i].dtype.kind == "f" else lo.weights[i], i)
                 for i in used_consts]
        graph = helper.make_graph(list(chain), "chain",
                                  [helper.make_tensor_value_info(h_name, TensorProto.DOUBLE, list(value.shape))],
                                  [helper.make_tensor_value_info(g_name, TensorProto.DOUBLE, None)], inits)
        m = helper.make_model(graph, opset_imports=list(lo.model.opset_import))
        out = ReferenceEvaluator(m).run(None, {h_name: np.asarray(value, np.float64)})[0]
        return np.asarray(out, np.float64)
    except Exception:
        return None
