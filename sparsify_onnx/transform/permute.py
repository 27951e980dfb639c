"""K permutation: reorder the input channels of an unstructured weight so that it becomes 2:4 in natural groups.

`permute_k(lo, selections) -> PermuteResult` rewrites the initializers of a model so that, for every fp16
MatMul/Gemm weight the spec makes unstructured, whose K axis can be permuted for free, the weight's rows (its k)
come in an order in which each group of 4 consecutive k holds at most two non-zeros in every output column.
On Hopper such a weight runs as a plain 2:4 product on the sparse tensor cores (``cuda_cover_wgmma`` in its natural
form: X read 16 bytes at a time), instead of the pair-permuted cover, whose 4-byte loads of X cost 1.5x.

Free means: the K axis is one of compaction's channel groups (`compact._Planner`: union-find over the axes that
must change together; graph inputs and outputs, Softmax's axis, and ops without a handler block a group), so the
same permutation applied to every initializer of the group leaves the model's outputs unchanged. In a
transformer that is the FFN: FFN1's output features (its weight columns and bias), the activation between, and
FFN2's K. An axis that reshapes split into (heads, head size) and merge back is ordered per head
(`_Groups.unit`): attention's output projection, whose K is V's output features, with V's columns and bias, each
head's k among themselves.

A LayerNorm over the last axis (`_norm_boundary`; the op or the decomposition torch.onnx's tracer writes before
opset 17, transform/layernorm.py) commutes with a permutation of that axis applied to its input,
scale and bias alike, so its input's axis joins the scale's and bias's group, and its output's axis is a group of
its own, whose order its consumers choose: a Gather after the LayerNorm maps the input's order to the output's
(`_insert_gather`; transform/lngather.py fuses the pair into ai.sparsify::LayerNormGather, which writes the row
in the new order at no extra cost). In a transformer that frees Q, K and V (one order for the three, which read
the same LayerNorm output) together with the residual stream up to the next LayerNorm (the attention output's
columns and bias, that LayerNorm's scale and bias), and FFN1 with the stream up to the layer's last LayerNorm
(FFN2's columns and bias). The last LayerNorm writes the graph's output in the model's own order. Shape and Size
nodes do not fix the axes they read (an order keeps lengths), and the caller plans on shapes inferred for
concrete input dims where an exporter computes reshape targets from Shape nodes (graph.with_input_dims). A Split's
pieces are groups of their own and its input's axis takes their orders side by side (`_split_boundary`: GPT-2's
fused Q, K, V projection, whose V slice moves with the attention output's K).

The order (`natural_order`): pair the k whose non-zeros overlap least in the output columns, then match the
pairs into groups of 4 that no column fills past two (the cover's ``pair_up``); `best_natural_order` tries a few
seeds until one leaves nothing past two, and where none does, `refine_order` swaps rows between groups
(simulated annealing on the count past two) and, for a whole K, moves what stays past two into its last
TAIL_ROWS rows (more for a column denser than half of K: `tail_rows`), a few 8-k chunks: the cover kernel loads
those chunks of X once more in an extra k-step or two and runs those entries on the tensor cores too (its FORM 3,
codegen/cuda/nm_wgmma.py), or adds them after its main loop from the stages still in shared memory. At 90% random
sparsity the greedy order is exact for BERT's FFN2 ([3072, 768]) and, per head of 64, for its attention output
([768, 768]); for FFN1's [768, 3072] (every group has to suit 3072 columns) it leaves ~1000 non-zeros past two,
and the swaps clear all groups but the last 32 (60-120 entries there, ~15 s); for Q, K and V together
([768, 2304]) ~150, and the swaps leave 30-40 in the tail (~8 s). The order is applied wherever it leaves fewer
non-zeros past two than k's own order: the kernel's forms in k's own order cost less the fewer there are and the
fewer chunks they fill, and its pair order does not depend on K's order (MiniLM's trained FFN1 weight of layer 1,
reordered, keeps 775 past two in 17 chunks: 15.8 us with two extra steps against 35.9 in the pair order on the H200,
bench/cuda/s17/run4-ext-ab).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Loaded
from .layernorm import find_layernorms

MAX_DENSITY = 0.3  # denser weights: no order gets near two per group of 4; not searched
MAX_K = 8192  # the search is O(K^2) in time and memory
SEEDS = 8  # orders tried per block of k until one leaves no residual
REFINE_STEPS = 50_000  # swap steps after the best greedy order where it leaves a residual (~15 s at [768, 3072])
REFINE_WORK = REFINE_STEPS * 768 * 48  # fewer for larger weights: each step costs K * N / 64 word operations
REFINE_PATIENCE = 10_000  # steps without a better order before the search stops
REFINE_TEMP = 1.0  # the annealing's first temperature (falls linearly to 0; 0.3 and 2 ended higher at [768, 3072])
TAIL_ROWS = 128  # a whole K's order puts what stays past two in its last rows, at least (tail_rows)
TAIL_WEIGHT = 1 / 16  # a non-zero past two in the tail, against one before it
MAX_JOBS = 16  # processes searching orders at once
ORDER_BLIND = ("Shape", "Size")  # read only an axis's length, which an order keeps (compaction's planner blocks
# what they read: they would see a shrunk axis; torch.onnx's tracer reads the shape of most tensors it reshapes)
PERMUTABLE_PATTERNS = ("unstructured", "channel")  # other weights of the group may carry these along the axis
# (and n:m across its groups: a 2:4 weight's columns move whole, each group of 4 along K intact; `_permutable`)


@dataclass
class PermuteResult:
    model: onnx.ModelProto
    edits: dict[str, np.ndarray] = field(default_factory=dict)  # initializer -> its permuted (or new) value
    groups: list[dict] = field(default_factory=list)  # per permuted group: weights, members, residual
    log: list[str] = field(default_factory=list)  # groups considered and not permuted, and why
    gathers: list[dict] = field(default_factory=list)  # per LayerNorm whose output order changed: node, gather
    tensors: dict[str, tuple] = field(default_factory=dict)  # new tensor -> (shape, onnx elem type)


def describe(group: dict) -> str:
    """One line for a reordered group (PermuteResult.groups entry): the progress line and the report say it."""
    return (f"{', '.join(group['nodes'])} ({group['residual_after']} of {group['nnz']} non-zeros past two per group "
            f"of 4, was {group['residual_before']}; with {', '.join(group['initializers'])})")


def natural_residual(mask: np.ndarray) -> int:
    """Non-zeros past two in the groups of 4 consecutive rows of a [K, N] mask, per column."""
    K, N = mask.shape
    m = np.zeros((-(-K // 4) * 4, N), np.int8)
    m[:K] = mask
    return int(np.maximum(m.reshape(-1, 4, N).sum(axis=1) - 2, 0).sum())


def _digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.packbits(mask).tobytes() + repr(mask.shape).encode()).hexdigest()


_MEMO: dict = {}  # (mask digest, seed) -> order: the pipeline plans up to three times (cost model, tuning)


def natural_order(mask: np.ndarray, seed: int = 0, tries: int = 4, on_search=None) -> np.ndarray:
    """The greedy order of the K rows of a [K, N] boolean mask (K a multiple of 4) whose groups of 4 hold at most two
    non-zeros in every column wherever the search finds one (see the module docstring). ``on_search()`` is
    called before a search (not when the order is remembered from an earlier call)."""
    key = (_digest(mask), seed, tries)
    if key not in _MEMO:
        if on_search:
            on_search()
        if len(_MEMO) > 512:
            _MEMO.clear()
        _MEMO[key] = _natural_order(mask, seed, tries)
    return _MEMO[key].copy()


def _natural_order(mask: np.ndarray, seed: int, tries: int) -> np.ndarray:
    from ..codegen.cuda.nm_wgmma import pair_up

    K, N = mask.shape
    rng = np.random.default_rng(seed)
    bf = mask.astype(np.float32)
    overlap = bf @ bf.T  # columns where rows i and j are both non-zero
    np.fill_diagonal(overlap, np.inf)
    free = np.ones(K, bool)
    pairs = []
    for k in rng.permutation(K):  # greedy: each row with the free row it overlaps least (random ties)
        if not free[k]:
            continue
        free[k] = False
        j = int(np.argmin(np.where(free, overlap[k], np.inf) + rng.random(K) * 0.5))
        free[j] = False
        pairs.append((int(k), j))
    cnt = np.stack([mask[a].astype(np.int8) + mask[b] for a, b in pairs])  # [K/2, N]
    two, one = (cnt == 2).astype(np.float32), (cnt >= 1).astype(np.float32)
    bad = (two @ one.T + one @ two.T) > 0  # two pairs that would give some column 3 or 4
    P = len(pairs)
    adj = [sum(1 << int(q) for q in np.flatnonzero(~bad[p]) if q != p) for p in range(P)]
    order, _ = pair_up(adj, P, rng, tries=tries)
    return np.array([k for p in order for k in pairs[p]], np.int64)


def best_natural_order(mask: np.ndarray, seed: int, on_search=None, tail: int = 0, on_refine=None) -> np.ndarray:
    """natural_order from up to SEEDS seeds (a small block, e.g. one head of 64 k, often needs a few), the first
    that leaves no residual, else the one that leaves the least, refined by `refine_order` (what stays past two
    goes to the last ``tail`` rows where it can; ``on_refine(entries past two)`` is called before that search)."""
    best = None
    for s in range(seed, seed + SEEDS):
        order = natural_order(mask, seed=s, on_search=on_search if s == seed else None)
        r = natural_residual(mask[order])
        if best is None or r < best[0]:
            best = (r, order)
        if r == 0:
            return order
    key = ("refined", _digest(mask), seed, tail)
    if key not in _MEMO:
        if on_refine:
            on_refine(best[0])
        _MEMO[key] = refine_order(mask, best[1], seed, tail=tail if mask.shape[0] >= 2 * tail else 0)
    return _MEMO[key].copy()


def _bits(m: np.ndarray) -> np.ndarray:
    """[..., N] bool -> [..., ceil(N / 64)] uint64, bit n % 64 of word n // 64."""
    p = np.packbits(m, axis=-1, bitorder="little")
    p = np.concatenate([p, np.zeros(p.shape[:-1] + (-p.shape[-1] % 8,), np.uint8)], axis=-1)
    return np.ascontiguousarray(p).view(np.uint64)


def refine_order(mask: np.ndarray, order: np.ndarray, seed: int = 0, tail: int = 0, steps: int | None = None,
                 temp: float = REFINE_TEMP) -> np.ndarray:
    """Lower the residual of ``order`` (rows of a [K, N] mask, K a multiple of 4) by swapping rows between groups
    of 4, counting what stays past two in the last ``tail`` rows at TAIL_WEIGHT (the cover kernel reads those
    entries' X from stages still in shared memory, cheaply): each step takes a random non-zero past two outside
    the tail (in the tail once there are none before it; a row a of group g, column n), prices swapping a with
    every row b of another group (the change in the weighted count, from popcounts of bit rows: columns where a
    group reaches 3 and 2), and makes the cheapest swap if it does not raise the count, or with probability
    exp(-rise / t) (t falls linearly from ``temp`` to 0; swapped rows rest 20 steps; ``steps``: REFINE_STEPS,
    fewer for a weight larger than [768, 3072]; it stops after REFINE_PATIENCE steps without a better order).
    Deterministic for a seed; returns the best order seen."""
    K, N = mask.shape
    if steps is None:
        steps = min(REFINE_STEPS, REFINE_WORK // (K * -(-N // 64)))
    rng = np.random.default_rng(seed)
    perm = np.array(order, np.int64)
    rows = mask[perm].copy()
    G = K // 4
    grp = np.repeat(np.arange(G), 4)
    weight = np.ones(G)
    weight[G - tail // 4:] = TAIL_WEIGHT if tail else 1.0
    before_tail = weight == 1
    cnt = rows.reshape(G, 4, N).sum(axis=1, dtype=np.int8)
    R = _bits(rows)
    ge2, ge3 = _bits(cnt >= 2)[grp], _bits(cnt >= 3)[grp]  # per row: its group's columns holding 2+ and 3+
    over = np.maximum(cnt - 2, 0).sum(axis=1)  # past two per group
    cost = best = float((over * weight).sum())
    best_perm, rest, best_it = perm.copy(), np.zeros(K, np.int64), 0
    pc = np.bitwise_count
    for it in range(1, steps + 1):
        if it - best_it > REFINE_PATIENCE:
            break
        gs = np.flatnonzero(over * before_tail)  # (before the tail first, then in it)
        if gs.size == 0:
            gs = np.flatnonzero(over)
            if gs.size == 0:
                break
        g = int(gs[rng.integers(gs.size)])
        ns = np.flatnonzero(cnt[g] >= 3)
        n = int(ns[rng.integers(ns.size)])
        ca = [r for r in range(4 * g, 4 * g + 4) if rows[r, n]]
        a = ca[rng.integers(len(ca))]
        wa = R[a]
        a3, b2 = wa & ge3[4 * g], ~wa & ge2[4 * g]
        # g loses a's columns where it holds 3+ and gains b's where it holds 2+ without a; b's group the reverse
        dg = pc(R & (a3 | b2)).sum(axis=1, dtype=np.int64) - int(pc(a3).sum())
        db = pc(ge2 & wa & ~R).sum(axis=1, dtype=np.int64) - pc(R & ge3 & ~wa).sum(axis=1, dtype=np.int64)
        delta = dg * weight[g] + db * weight[grp]
        delta[4 * g:4 * g + 4] = np.inf
        delta[rest > it] = np.inf
        b = int(np.argmin(delta + rng.random(K) * 1e-3))  # (random ties)
        d = float(delta[b])
        if not np.isfinite(d):
            continue
        t = temp * (1 - it / steps)
        if d > 1e-9 and (t <= 0 or rng.random() >= np.exp(-d / t)):
            continue
        gb = int(grp[b])
        diff = rows[b].astype(np.int8) - rows[a]
        cnt[g] += diff
        cnt[gb] -= diff
        rows[[a, b]], R[[a, b]], perm[[a, b]] = rows[[b, a]], R[[b, a]], perm[[b, a]]
        for h in (g, gb):
            ge2[4 * h:4 * h + 4], ge3[4 * h:4 * h + 4] = _bits(cnt[h] >= 2), _bits(cnt[h] >= 3)
            over[h] = np.maximum(cnt[h] - 2, 0).sum()
        rest[a] = rest[b] = it + 20
        cost += d
        if cost < best - 1e-9:
            best, best_perm, best_it = cost, perm.copy(), it
    return best_perm


def _k_slot(lo: Loaded, node) -> tuple[str, int] | None:
    """(weight, axis) of the K axis of a MatMul/Gemm's constant 2-D weight."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    w = node.input[1]
    if w not in lo.initializer_names or lo.weights[w].ndim != 2:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm" and int(attrs.get("transA", 0)):
        return None
    return w, (1 if node.op_type == "Gemm" and int(attrs.get("transB", 0)) else 0)


def permute_k(lo: Loaded, selections: dict, *, seed: int = 0, progress=None,
              dtypes: tuple = (np.float16,), jobs: int | None = None) -> PermuteResult:
    """Permute the K axis of the model's unstructured weights (of ``dtypes``: the cover is fp16) where that is
    free (module docstring); the orders are searched in up to ``jobs`` processes (default: the host's cores, at
    most MAX_JOBS), with the same results as one."""
    from .compact import _Planner

    pl = _Planner(SimpleNamespace(annotated=SimpleNamespace(loaded=lo)))
    pl.keeps_sizes = True  # (an order keeps every length: a reshape target need not be editable)
    g = lo.model.graph
    boundaries = []  # (LayerNormMatch, its normalised axis's slot on the input, on the output)
    norms = find_layernorms(lo)
    part_of = {id(n): m for m in norms.values() for n in m.nodes}
    cuts = []  # (a Split's input slot of its split axis, [(piece slot, offset, size)])
    for node in g.node:
        if node.op_type in ORDER_BLIND:
            continue
        m = part_of.get(id(node))
        if node.op_type == "Split":
            c = _split_boundary(pl, node)
            if c:
                cuts.append(c)
                continue
        if m is None:
            pl.visit(node)
        elif node is m.nodes[-1]:
            b = _norm_boundary(pl, m)
            if b:
                boundaries.append(b)
            else:
                for n in m.nodes:
                    pl.visit(n)
    for vi in list(g.input) + list(g.output):
        pl.blocked.update(pl.slots_of(vi.name))
    groups = _Groups(pl)
    cut_roots = _check_cuts(pl, groups, cuts, lo, selections)

    units: dict = {}  # unit key -> (slots that take the order, heads, [(node name, weight, axis)])
    orders: dict = {}  # group root -> the order its slots took
    entry_of: dict = {}  # group root -> its res.groups entry
    res = PermuteResult(model=lo.model)
    for node in g.node:
        ks = _k_slot(lo, node)
        sel = selections.get(ks[0]) if ks else None
        if ks is None or sel is None or sel.pattern.kind != "unstructured" or lo.weights[ks[0]].dtype not in dtypes:
            continue
        if ks not in pl.uf.p:
            continue
        key, slots, heads, why = groups.unit(pl.uf.find(ks), lo)
        if why is None and pl.uf.find(ks) in cut_roots:
            why = "a Split cuts the axis into pieces, whose orders it takes"
        if why:
            res.log.append(f"K of {lo.node_name(node)} not permuted: {why}")
            continue
        units.setdefault(key, (slots, heads, []))[2].append((lo.node_name(node), *ks))

    pending = []  # units to order: (slots, heads, [(node, weight, axis)], names, K, mask, nnz, residual before)
    for slots, heads, tl in units.values():
        names = ", ".join(t[0] for t in tl)
        K = pl.size(tl[0][1:])
        why = None
        for t, ax in slots:
            sel = selections.get(t) if t in lo.initializer_names else None
            if sel is not None and not _permutable(sel, ax):
                why = f"{t} is {sel.pattern.short()} along the axis"
                break
        if why is None and (K is None or K % heads or (K // heads) % 4 or K > MAX_K):
            why = f"K = {K}" + (f" in {heads} heads" if heads > 1 else "") + f": not a multiple of 4 up to {MAX_K}"
        if why is None:
            mask = np.concatenate([np.moveaxis(lo.weights[w], ax, 0) != 0 for _, w, ax in tl], axis=1)
            nnz = int(mask.sum())
            if nnz == 0 or nnz / mask.size > MAX_DENSITY:
                why = f"density {nnz / mask.size:.2f} is over {MAX_DENSITY}"
        if why is not None:
            res.log.append(f"K of {names} not permuted: {why}")
            continue
        before = natural_residual(mask)
        if before == 0:
            res.log.append(f"K of {names} not permuted: already 2:4 in natural groups")
            continue
        pending.append((slots, heads, tl, names, K, mask, nnz, before))

    perms = _unit_orders([(p[3], p[4], p[5], p[1]) for p in pending], seed, progress, jobs)
    for (slots, heads, tl, names, K, mask, nnz, before), perm in zip(pending, perms):
        after = natural_residual(mask[perm])
        if after >= before:
            res.log.append(f"K of {names} not permuted: the best order found leaves {after} of {nnz} non-zeros "
                           f"past two per group of 4 (natural order: {before})")
            continue
        inits = sorted({s for s in slots if s[0] in lo.initializer_names})
        for t, ax in inits:
            res.edits[t] = np.take(res.edits.get(t, lo.weights[t]), perm, axis=ax)
        entry = {"weights": [w for _, w, _ in tl], "nodes": [t[0] for t in tl], "K": K, "heads": heads,
                 "initializers": [f"{t}[axis {ax}]" for t, ax in inits],
                 "residual_before": before, "residual_after": after, "nnz": nnz}
        for s in slots:
            orders[pl.uf.find(s)] = perm
            entry_of[pl.uf.find(s)] = entry
        res.groups.append(entry)
    for xs, pieces in cuts:  # a Split's input axis takes its pieces' orders side by side
        taken = [orders.get(pl.uf.find(ps)) for ps, _, _ in pieces]
        if all(o is None for o in taken) or pl.uf.find(xs) not in cut_roots:
            continue
        full = np.concatenate([off + (np.arange(n) if o is None else o) for (_, off, n), o in zip(pieces, taken)])
        inits = sorted({m for m in groups.members.get(pl.uf.find(xs), []) if m[0] in lo.initializer_names})
        for t, ax in inits:
            res.edits[t] = np.take(res.edits.get(t, lo.weights[t]), full, axis=ax)
        for (ps, off, n), o in zip(pieces, taken):
            if o is not None:
                entry_of[pl.uf.find(ps)]["initializers"] += [f"{t}[axis {ax}, {off}:{off + n}]" for t, ax in inits]
    gathers = []
    for m, xs, ys in boundaries:
        pi, sigma = orders.get(pl.uf.find(xs)), orders.get(pl.uf.find(ys))
        if pi is None and sigma is None:
            continue
        H = pl.size(xs)
        pi = np.arange(H) if pi is None else pi
        sigma = np.arange(H) if sigma is None else sigma
        index = np.argsort(pi)[sigma]  # output k of the gather = input k index[k] (input in order pi, output sigma)
        if (index != np.arange(H)).any():
            gathers.append((m, index))
    if res.edits or gathers:
        model = onnx.ModelProto()
        model.CopyFrom(lo.model)
        for t in model.graph.initializer:
            if t.name in res.edits:
                t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(res.edits[t.name]), t.name))
        for m, index in gathers:
            _insert_gather(lo, model, m, index, res)
        res.model = model
    return res


def _permutable(sel, axis: int) -> bool:
    """Whether a weight of selection `sel` keeps its pattern when its `axis` is permuted: unstructured and channel
    weights along any axis, n:m ones along an axis other than their groups' (FFN2's columns when FFN2 is 2:4)."""
    return sel.pattern.kind in PERMUTABLE_PATTERNS or (
        sel.pattern.kind == "nm" and sel.reduction_axis is not None and axis != sel.reduction_axis)


def tail_rows(mask: np.ndarray) -> int:
    """The rows at the end of a whole K where `refine_order` gathers what stays past two: TAIL_ROWS, or where a column
    holds more than K / 2 non-zeros (an outlier feature of trained weights: more than any order fits in 2 of 4),
    room for its excess at two per group of 4 (two rows per entry), in steps of 64. MiniLM's FFN2 of layer 5 (three
    columns 220 past half): 448 rows leave its 477 entries in 56 chunks, against 146 with 128 rows, so the cover
    loads 7 extra steps of 64 instead of 16."""
    excess = int(np.maximum(mask.sum(axis=0) - mask.shape[0] // 2, 0).max(initial=0))
    return max(TAIL_ROWS, -(-2 * excess // 64) * 64)


def unit_order(mask: np.ndarray, heads: int, seed: int, say=None, refine_say=None) -> np.ndarray:
    """The order of a unit's K rows (a [K, N] mask): `best_natural_order`, per head when there are heads (each
    head's k among themselves, no tail), else over the whole K with what stays past two in its last `tail_rows`."""
    d = mask.shape[0] // heads
    return np.concatenate([h * d + best_natural_order(mask[h * d:(h + 1) * d], seed, say,
                                                      tail=tail_rows(mask) if heads == 1 else 0, on_refine=refine_say)
                           for h in range(heads)])


def _unit_orders(work: list, seed: int, progress, jobs: int | None) -> list:
    """unit_order for every (names, K, mask, heads) of `work`: remembered ones from _MEMO, the others in a pool of
    processes where there are two or more and more than one core (the swap search is single-threaded: four BERT
    layers' Q, K, V and FFN1 took ~110 s one after the other), else here."""
    import os
    keys = [("unit", _digest(m), heads, seed, TAIL_ROWS) for _, _, m, heads in work]  # (the mask sets its tail_rows)
    out = [_MEMO[k].copy() if k in _MEMO else None for k in keys]
    todo = [i for i, o in enumerate(out) if o is None]
    jobs = min(jobs or os.cpu_count() or 1, MAX_JOBS, len(todo))
    if jobs > 1:
        import multiprocessing
        import warnings
        from concurrent.futures import ProcessPoolExecutor, as_completed
        if progress:
            progress(f"ordering the K rows of {len(todo)} weights into 2:4 groups ({jobs} processes)")
        # fork, not spawn: spawn re-runs the caller's main script in every worker, which breaks any script that
        # calls convert() without an `if __name__ == "__main__"` guard. Python 3.12 warns that forking a process
        # with threads (onnxruntime's, the tuner's) may deadlock a child that needs a lock another thread held;
        # these workers only run numpy on the masks they are given (run on the dev machine and the 16-core GPU
        # host, bench/NOTES.md session 14), so the warning is silenced here.
        with warnings.catch_warnings(), ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("fork")) as ex:
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            futs = {ex.submit(unit_order, work[i][2], work[i][3], seed): i for i in todo}
            for f in as_completed(futs):
                i = futs[f]
                out[i] = f.result()
                if progress:
                    progress(f"  K = {work[i][1]} of {work[i][0]}: {natural_residual(work[i][2][out[i]])} non-zeros "
                             f"past two")
    else:
        for i in todo:
            names, K, mask, heads = work[i]
            said: list = []  # (one line per weight, not per head)
            say = progress and (lambda: said or said.append(progress(
                f"ordering the K = {K} rows of {names} into 2:4 groups" + (f" ({heads} heads)" if heads > 1 else ""))))
            refine_say = progress and (lambda r: progress(
                f"  {r} non-zeros past two in the best greedy order: a swap search (up to {REFINE_STEPS} steps, "
                f"~15 s at [768, 3072])"))
            out[i] = unit_order(mask, heads, seed, say, refine_say)
    for i in todo:
        _MEMO[keys[i]] = out[i].copy()
    return out


def _norm_boundary(pl, m):
    """For a LayerNorm over its last axis (a `LayerNormMatch`: the op or the exporters' decomposition) whose scale
    (and bias) are float16/32: link its input's leading axes with its output's, and its normalised axis with the
    scale and bias, but not with the output's (LayerNorm commutes with a permutation of the axis applied to
    input, scale and bias alike). The output's order is then its consumers' to choose: a Gather after it maps one
    order to the other, and transform.lngather fuses the two into ai.sparsify::LayerNormGather, which reads the
    row once and writes it in the new order. Returns (match, input slot, output slot) of the normalised axis, or
    None (then the planner visits its nodes, which fixes the axis)."""
    x, y, lo = m.x, m.y, pl.lo
    dx = pl.dims(x)
    if not dx or pl.size((x, len(dx) - 1)) is None or lo.weights[m.scale].dtype not in (np.float16, np.float32):
        return None
    r = len(dx)
    params = [m.scale] + ([m.bias] if m.bias else [])
    pl.handled = set()
    for a in range(r - 1):
        pl.link((x, a), (y, a))
    for p in params:
        pl.link((p, 0), (x, r - 1))
    pl.ok((y, r - 1))
    pl.block_unhandled([x, y, *params])
    return m, (x, r - 1), (y, r - 1)


def _split_boundary(pl, node):
    """For a Split along an axis whose piece sizes are known (GPT-2 cuts its fused Q, K, V projection so): link
    its input's other axes with its pieces' (what an element-wise handler links), and keep each piece's split
    axis a group of its own, apart from the input's: an order of a piece is an order of its slice of the input's
    axis, and the input's axis takes its pieces' orders side by side (`_check_cuts`, permute_k). Returns (input
    slot, [(piece slot, offset, size)]), or None (then the planner visits it, which fixes the axes)."""
    x, outs = node.input[0], list(node.output)
    dx = pl.dims(x)
    if not dx or not outs or any(not o or pl.dims(o) is None or len(pl.dims(o)) != len(dx) for o in outs):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    r = len(dx)
    a = int(attrs.get("axis", 0)) % r
    n = pl.size((x, a))
    if n is None:
        return None
    if len(node.input) > 1 and node.input[1]:
        v = pl.lo.weights.get(node.input[1])
        sizes = None if v is None else [int(i) for i in np.asarray(v).reshape(-1)]
    elif "split" in attrs:
        sizes = [int(i) for i in attrs["split"]]
    else:
        sizes = [n // len(outs)] * len(outs) if n % len(outs) == 0 else None
    if sizes is None or len(sizes) != len(outs) or sum(sizes) != n or \
            any(pl.size((o, a)) != k for o, k in zip(outs, sizes)):
        return None
    pl.handled = set()
    for o in outs:
        for b in range(r):
            if b != a:
                pl.link((x, b), (o, b))
        pl.ok((o, a))
    pl.ok((x, a))
    pl.block_unhandled([x, *outs])
    offsets = np.cumsum([0] + sizes[:-1])
    return (x, a), [((o, a), int(off), k) for o, off, k in zip(outs, offsets, sizes)]


def _check_cuts(pl, groups, cuts, lo, selections) -> set:
    """The roots of the Split input axes whose pieces may take orders: their group is not fixed, not reshaped, and
    its constants keep their pattern when permuted. The pieces of the others are fixed (added to pl.blocked), a
    piece of a fixed cut fixing the cuts it feeds in turn."""
    ok: set = set()
    for _ in cuts:  # (until nothing changes: at most one pass per cut)
        ok, changed = set(), False
        for xs, pieces in cuts:
            root = pl.uf.find(xs)
            members = groups.members.get(root, [])
            fine = groups.fixed(root) is None and root not in groups.splits and root not in groups.as_factor and all(
                selections.get(t) is None or _permutable(selections[t], ax)
                for t, ax in members if t in lo.initializer_names)
            if fine:
                ok.add(root)
            elif not all(ps in pl.blocked for ps, _, _ in pieces):
                pl.blocked.update(ps for ps, _, _ in pieces)
                changed = True
        if not changed:
            break
    return ok


def _insert_gather(lo: Loaded, model: onnx.ModelProto, m, index: np.ndarray, res: PermuteResult) -> None:
    """The LayerNorm (match `m`) writes `<y>/pre_order`; Gather(axis -1) with `index` writes y, so its consumers
    and the graph's outputs keep their names."""
    y = m.y
    pre, idx = f"{y}/pre_order", f"{y}/order"
    at = next(i for i, n in enumerate(model.graph.node) if n.output and n.output[0] == y)
    model.graph.node[at].output[0] = pre
    name = f"{m.name}/Order"
    model.graph.node.insert(at + 1, helper.make_node("Gather", [pre, idx], [y], name=name, axis=-1))
    model.graph.initializer.append(numpy_helper.from_array(index.astype(np.int64), idx))
    res.edits[idx] = index.astype(np.int64)
    res.tensors[pre] = (lo.shapes.get(y), lo.dtypes.get(y))
    res.tensors[idx] = ((index.size,), onnx.TensorProto.INT64)
    res.gathers.append({"node": m.name, "gather": name, "moved": int((index != np.arange(index.size)).sum())})


class _Groups:
    """Compaction's channel groups, and which of them an order may be applied to."""

    def __init__(self, pl):
        self.pl = pl
        self.members: dict = {}
        for s in list(pl.uf.p):
            self.members.setdefault(pl.uf.find(s), []).append(s)
        self.splits: dict = {}  # product root -> {(factor roots, factor sizes)}: reshapes that split or merge it
        self.as_factor: dict = {}  # factor root -> {factor roots of each relation it is a factor of}
        for d, fs in pl.relations:
            for x in (d, *fs):  # (a slot only a reshape touches is a group of its own)
                self.members.setdefault(pl.uf.find(x), [x])
            facts = tuple(pl.uf.find(f) for f in fs)
            self.splits.setdefault(pl.uf.find(d), set()).add((facts, tuple(pl.size(f) for f in fs)))
            for f in facts:
                self.as_factor.setdefault(f, set()).add(facts)

    def fixed(self, root) -> str | None:
        ms = self.members.get(root, [])
        if any(s in self.pl.blocked for s in ms):
            return "the axis is fixed elsewhere (a graph input or output, a normalisation, an op without a handler)"
        sizes = {self.pl.size(s) for s in ms}
        if len(sizes) != 1 or None in sizes:
            return "the group's sizes are not all known"
        return None

    def unit(self, root, lo):
        """(key, slots that take the order, heads, why not): the K group itself, or, for an axis a reshape splits
        into (heads, head size), every axis made of those two factors, each head's k ordered among themselves
        (attention's output projection: its K is V's output features, per head). Valid when the head-size
        axis is only ever split from or merged into (heads, head size), holds no constant, and every tensor
        that has it also has the heads axis (so no op mixes heads along it)."""
        if root in self.as_factor:
            return None, [], 1, "the axis is a factor of a reshape"
        if root not in self.splits:
            why = self.fixed(root)
            return ("plain", root), self.members.get(root, []), 1, why
        if len(self.splits[root]) != 1:
            return None, [], 1, "reshapes split the axis in different ways"
        (facts, sizes), = self.splits[root]
        if len(facts) != 2:
            return None, [], 1, f"a reshape splits the axis into {len(facts)} axes, not (heads, head size)"
        hr, dr = facts
        if hr == dr or dr in self.splits or self.as_factor.get(dr) != {facts}:
            return None, [], 1, "the head-size axis is also reshaped otherwise"
        why = self.fixed(dr)
        if why:
            return None, [], 1, "head size: " + why
        if any(t in lo.initializer_names for t, _ in self.members[dr]):
            return None, [], 1, "a constant runs along the head-size axis"
        with_heads = {t for t, _ in self.members.get(hr, [])}
        if any(t not in with_heads for t, _ in self.members[dr]):
            return None, [], 1, "a tensor has the head-size axis without the heads axis"
        products = [p for p, sp in self.splits.items() if any(f == facts for f, _ in sp)]
        slots = []
        for p in products:
            if len(self.splits[p]) != 1 or p in self.as_factor:
                return None, [], 1, "an axis made of the same heads is also reshaped otherwise"
            why = self.fixed(p)
            if why:
                return None, [], 1, why
            slots += self.members.get(p, [])
        return ("heads", hr, dr), slots, sizes[0], None
