"""Propagation statistics: per tensor densities and the live shares of weights and MACs."""
from __future__ import annotations

import numpy as np

from ..graph import WEIGHT_INPUT
from ..tesa import TeSA
from .masks import count_matmul, to_rank


def _compact_live(t: TeSA) -> np.ndarray:
    r = len(t.mask_shape)
    return to_rank(t.nonzero, r) & to_rank(t.used, r)


def _live_count(t: TeSA) -> int:
    lc = _compact_live(t)
    total = int(np.prod(t.mask_shape)) if t.mask_shape else 1
    return int(np.count_nonzero(lc)) * (total // max(lc.size, 1))


def _size(t: TeSA) -> int:
    return int(np.prod(t.mask_shape)) if t.mask_shape else 1


def node_macs(node, tesas: dict[str, TeSA], attrs: dict, dense: bool = False) -> tuple[int, int] | None:
    """(dense MACs, live MACs) of a MatMul/Gemm/Conv, per unit of each symbolic dim."""
    def live(name):
        t = tesas[name]
        return np.ones((1,) * len(t.mask_shape), bool) if dense else _compact_live(t)

    def used(name):
        t = tesas[name]
        return np.ones((1,) * len(t.mask_shape), bool) if dense else to_rank(t.used, len(t.mask_shape))

    def mshape(name):
        return tesas[name].mask_shape

    op = node.op_type
    try:
        if op in ("MatMul", "Gemm"):
            a, b = live(node.input[0]), live(node.input[1])
            sa, sb = mshape(node.input[0]), mshape(node.input[1])
            u = used(node.output[0])
            if len(sa) == 0 or len(sb) == 0:
                return None
            if op == "Gemm":
                if len(sa) != 2 or len(sb) != 2:
                    return None
                if attrs.get("transA", 0):
                    a, sa = a.T, sa[::-1]
                if attrs.get("transB", 0):
                    b, sb = b.T, sb[::-1]
            if len(sa) == 1:
                a, sa = a[None, :], (1,) + tuple(sa)
                u = np.expand_dims(u, -2)
            if len(sb) == 1:
                b, sb = b[:, None], tuple(sb) + (1,)
                u = np.expand_dims(u, -1)
            k = max(sa[-1], sb[-2])
            cnt = count_matmul(a, b, k_size=k)
            live_macs = float((cnt * u).sum())
            # scale up the axes that stayed compact (size 1) in the product but are larger in reality
            batch = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
            full = tuple(batch) + (sa[-2], sb[-1])
            prod_shape = np.broadcast_shapes(cnt.shape, u.shape)
            prod_shape = (1,) * (len(full) - len(prod_shape)) + tuple(prod_shape)
            scale = int(np.prod(full)) // max(int(np.prod(prod_shape)), 1)
            dense_macs = int(np.prod(full)) * k
            return dense_macs, int(live_macs * scale)
        if op == "Conv":
            x, w = live(node.input[0]), live(node.input[1])
            u = used(node.output[0])
            x = np.broadcast_to(x, mshape(node.input[0]))
            w = np.broadcast_to(w, mshape(node.input[1]))
            u = np.broadcast_to(u, mshape(node.output[0]))
            if x.ndim < 3 or w.ndim != x.ndim:
                return None
            group = int(attrs.get("group", 1))
            M, Cg = w.shape[0], w.shape[1]
            R = int(np.prod(w.shape[2:]))
            P = int(np.prod(u.shape[2:]))
            xc = x.any(axis=tuple(range(2, x.ndim)))  # [N, C]
            uc = u.any(axis=tuple(range(2, u.ndim)))  # [N, M]
            wc = w.reshape(M, Cg, -1).sum(axis=-1).astype(np.float64)  # live kernel taps
            N = max(xc.shape[0], uc.shape[0])
            Mg = M // group
            total = 0.0
            for g in range(group):
                xs = np.broadcast_to(xc, (N, xc.shape[1]))[:, g * Cg:(g + 1) * Cg].astype(np.float64)
                us = np.broadcast_to(uc, (N, M))[:, g * Mg:(g + 1) * Mg].astype(np.float64)
                total += float((us * (xs @ wc[g * Mg:(g + 1) * Mg].T)).sum())
            return int(N * P * M * Cg * R), int(total * P)
    except Exception:
        return None
    return None


def compute_stats(engine, initial: dict[str, TeSA], elapsed_s: float) -> dict:
    an = engine.annotated
    tesas = engine.tesas
    lo = engine.loaded
    weights = [n for n in lo.initializer_names if n in tesas and lo.weights[n].dtype.kind == "f"]
    linear = set()
    for node in engine.nodes:
        wi = WEIGHT_INPUT.get(node.op_type)
        if wi is not None and len(node.input) > wi and node.input[wi] in lo.initializer_names:
            linear.add(node.input[wi])

    def totals(names):
        tot = sum(_size(tesas[n]) for n in names)
        before = sum(_live_count(initial[n]) for n in names)
        after = sum(_live_count(tesas[n]) for n in names)
        return {"elements": tot, "live_declared": before, "live_after": after,
                "share_live_declared": before / tot if tot else 1.0,
                "share_live_after": after / tot if tot else 1.0,
                "share_dead_declared": 1 - before / tot if tot else 0.0,
                "share_dead_after": 1 - after / tot if tot else 0.0}

    per_tensor = {}
    for name, t in tesas.items():
        sel = an.selections.get(name) if an.selections else None
        declared = sel.density_after if sel is not None else t.declared_density
        per_tensor[name] = {
            "shape": [d if isinstance(d, int) else str(d) for d in t.shape],
            "weight": name in lo.initializer_names,
            "float": (lo.weights[name].dtype.kind == "f") if name in lo.weights else
            (lo.dtypes.get(name) in (1, 10, 11, 16)),
            "declared_density": declared,
            "density_declared_live": _density(initial[name]) if name in initial else None,
            "density": _density(t),
            "nonzero_density": float(np.mean(t.nonzero)),
            "used_density": float(np.mean(t.used)),
            "narrowed_by": list(t.narrowed_by),
            "pattern": t.pattern.short(),
            "dynamic": t.dynamic,
        }
    macs_nodes = {}
    md = mb = ma = 0
    for k, node in enumerate(engine.nodes):
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        from onnx import helper
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        after = node_macs(node, tesas, attrs)
        before = node_macs(node, {n: _declared_only(initial[n]) for n in list(node.input) + list(node.output) if n},
                           attrs)
        if after is None or before is None:
            continue
        macs_nodes[engine.node_names[k]] = {"dense": after[0], "live_declared": before[1], "live_after": after[1]}
        md += after[0]; mb += before[1]; ma += after[1]
    return {
        "constant_channels": constant_channels(engine),
        "tensors": per_tensor,
        "weights": totals(weights),
        "linear_weights": totals(sorted(linear)),
        "macs": {"dense": md, "live_declared": mb, "live_after": ma,
                 "share_live_declared": mb / md if md else 1.0, "share_live_after": ma / md if md else 1.0,
                 "per_node": macs_nodes, "note": "multiply-adds per unit of each symbolic dim (batch=seq=1)"},
        "unknown_ops": list(engine.unknown_ops),
        "iterations": engine.iterations,
        "time_s": elapsed_s,
    }


def constant_channels(engine) -> dict[str, int]:
    """Bias entries that make a channel constant: the product before the bias is zero there but the
    bias is not (e.g. FFN1 output channels pruned in the weight only). Such channels are live, but
    channel compaction can fold them into the next layer's bias and then remove them."""
    lo = engine.loaded
    out: dict[str, int] = {}
    for node in engine.nodes:
        try:
            if node.op_type == "Add" and len(node.input) == 2:
                a, b = node.input
                bias, h = (b, a) if b in lo.initializer_names else (a, b) if a in lo.initializer_names else (None, None)
                if bias is None or lo.weights[bias].ndim != 1:
                    continue
                prod = lo.producer.get(h)
                if prod is None or prod.op_type != "MatMul":
                    continue
                t = engine.tesas[h]
                nz = np.broadcast_to(t.nonzero, t.mask_shape)
                n = lo.weights[bias].size
                if nz.shape[-1] != n:
                    continue
                zero = ~nz.reshape(-1, n).any(axis=0)
            elif node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] in lo.initializer_names:
                bias = node.input[2]
                t = engine.tesas[node.input[1]]
                live = np.broadcast_to(t.live, t.mask_shape)
                if any(a.name == "transB" and a.i for a in node.attribute):
                    live = live.T
                n = lo.weights[bias].size
                if lo.weights[bias].ndim != 1 or live.ndim != 2 or live.shape[1] != n:
                    continue
                zero = ~live.any(axis=0)
            else:
                continue
            k = int(np.count_nonzero(zero & (lo.weights[bias].reshape(-1) != 0)))
            if k:
                out[bias] = k
        except Exception:  # statistics only
            continue
    return out


def _density(t: TeSA) -> float:
    lc = _compact_live(t)
    return float(lc.mean()) if lc.size else 1.0


def _declared_only(t: TeSA) -> TeSA:
    """The declared state: weight zeros (nonzero) only; every element used."""
    c = TeSA(name=t.name, shape=t.shape, nonzero=t.nonzero, used=np.ones((1,) * len(t.mask_shape), bool))
    return c


def snapshot(tesas: dict[str, TeSA]) -> dict[str, TeSA]:
    return {n: TeSA(name=n, shape=t.shape, nonzero=t.nonzero.copy(), used=t.used.copy(), pattern=t.pattern,
                    dynamic=t.dynamic, declared_density=t.declared_density) for n, t in tesas.items()}

