"""Propagation report: text for `inspect MODEL SPEC`, a dict for report.json."""
from __future__ import annotations


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def _shape(s) -> str:
    return "x".join(str(d) for d in s) if s else "scalar"


def propagation_summary(propagated, *, max_tensors: int | None = None) -> dict:
    """JSON-able summary: totals (weights, linear weights, MACs), unknown ops, per-tensor densities."""
    st = propagated.stats or {}
    tensors = []
    for name, t in (st.get("tensors") or {}).items():
        if not t["weight"] and t["density"] >= 1.0 and t["declared_density"] is None:
            continue
        if t["weight"] and not t.get("float", True):
            continue  # shape tensors, indices
        tensors.append({"name": name, "shape": t["shape"], "weight": t["weight"], "pattern": t["pattern"],
                        "declared_density": t["declared_density"], "density_declared_live": t["density_declared_live"],
                        "density": t["density"], "nonzero_density": t["nonzero_density"],
                        "used_density": t["used_density"], "narrowed_by": t["narrowed_by"][:8],
                        "narrowed_by_count": len(t["narrowed_by"]), "dynamic": t["dynamic"]})
    tensors.sort(key=lambda r: (not r["weight"], r["name"]))
    if max_tensors is not None:
        tensors = tensors[:max_tensors]
    macs = dict(st.get("macs") or {})
    return {
        "enabled": bool(getattr(propagated, "enabled", True)),
        "time_s": round(float(st.get("time_s", propagated.time_s)), 4),
        "iterations": int(propagated.iterations),
        "unknown_ops": list(propagated.unknown_ops),
        "weights": st.get("weights", {}),
        "linear_weights": st.get("linear_weights", {}),
        "macs": macs,
        "constant_channels": dict(st.get("constant_channels") or {}),
        "tensors": tensors,
        "log": list(propagated.log)[:200],
    }


def format_propagation(propagated, *, max_activations: int = 200) -> str:
    """Aligned text: totals, unknown ops, then weights and narrowed activations."""
    s = propagation_summary(propagated)
    lw, w, mc = s["linear_weights"], s["weights"], s["macs"]
    lines = []
    if not s["enabled"]:
        lines.append("propagation: disabled (spec `propagate: false`): declared facts only")
    lines.append(f"propagation: {s['iterations']} rule applications, {s['time_s']:.2f} s")
    if lw:
        dd, da = lw.get("share_dead_declared", 0.0), lw.get("share_dead_after", 0.0)
        ratio = f" ({da / dd:.2f}x)" if dd else ""
        lines.append(f"  linear weights dead: {_pct(dd)} declared -> {_pct(da)} after propagation{ratio}"
                     f"  [{lw.get('elements', 0):,} elements]")
    if w:
        lines.append(f"  all weights live:    {_pct(w.get('share_live_declared'))} declared -> "
                     f"{_pct(w.get('share_live_after'))} after")
    if mc and mc.get("dense"):
        lines.append(f"  MACs live (MatMul/Gemm/Conv): {_pct(mc.get('share_live_declared'))} declared -> "
                     f"{_pct(mc.get('share_live_after'))} after  [{mc['dense']:,} dense per batch x seq unit]")
    lines.append("  ops without a rule (kept conservative): " + (", ".join(s["unknown_ops"]) or "none"))
    cc = s["constant_channels"]
    if cc:
        lines.append(f"  constant channels: {sum(cc.values()):,} in {len(cc)} biases (weight pruned, bias live: "
                     "live constants here; channel compaction folds them into the next bias and removes them)")
    rows = [("tensor", "shape", "declared", "propagated", "narrowed by")]
    acts = 0
    for t in s["tensors"]:
        if not t["weight"]:
            acts += 1
            if acts > max_activations:
                continue
        nb = ", ".join(t["narrowed_by"][:3]) + (f" (+{t['narrowed_by_count'] - 3})" if t["narrowed_by_count"] > 3 else "")
        declared = t["declared_density"] if t["declared_density"] is not None else t["density_declared_live"]
        rows.append((t["name"], _shape(t["shape"]), _pct(declared), _pct(t["density"]), nb or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    if acts > max_activations:
        lines.append(f"  ... {acts - max_activations} more narrowed activations")
    return "\n".join(lines)
