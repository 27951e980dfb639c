"""The engine's report: sparsity, plan, FLOPs saved beside time saved, verification.

`build_report(...)` gathers what the pipeline produced into one JSON-able dict;
`write_report(report, out_dir)` writes report.json, report.md and report.html (self-contained:
inline CSS, no scripts, no external assets); `format_console(report)` is the short text the CLI
prints after convert.

Inputs (all plain dicts, so the report can be rebuilt from manifest.json and a bench JSON):

- `plan_nodes`: `NodePlan.to_dict()` of every planned node (node, op_type, action, weight,
  pattern, density, shape, kernels {device: KernelSpec.to_dict()}, op_key, fused, reason,
  macs_dense_per_row, macs_live_per_row);
- `propagation`: a propagation summary (weights / linear_weights / macs shares, unknown_ops,
  iterations, ...), rendered key by key; large per-tensor tables stay in the JSON only;
- `latency`: a `bench.latency.compare()` result;
- `verification`: `engine.verify.Verification.to_dict()` ({passed, tolerance, outputs:
  {name: {max_abs, max_rel, rel_l2} | {error}}}), or a flat {output: max_rel};
- `meta`: model, spec, hashes, devices, decided_by, input_shapes, engine, ... (free form).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

REPORT_VERSION = 1
FILES = ("report.json", "report.md", "report.html")


# ----------------------------------------------------------------------------------------------
# building


def _kernel_names(n: dict) -> dict[str, str]:
    out = {}
    for dev, k in (n.get("kernels") or {}).items():
        if isinstance(k, dict):
            out[dev] = (k.get("name") or k.get("family") or "?") + (f" ({k['form']})" if k.get("form") else "")
        else:
            out[dev] = str(k)
    return out


def _epilogue(n: dict) -> str:
    """What the fused nodes do, from the kernel's epilogue ("bias + gelu + residual"), else their names."""
    fused = list(n.get("fused") or [])
    for k in (n.get("kernels") or {}).values():
        ep = k.get("epilogue") if isinstance(k, dict) else None
        if isinstance(ep, dict):
            parts = (["bias"] if ep.get("bias") else []) + \
                ([ep["activation"]] if ep.get("activation") not in (None, "none") else []) + \
                (["residual"] if ep.get("residual") else [])
            if parts:
                return " + ".join(parts) + (f" ({len(fused)} nodes)" if fused else "")
    return ", ".join(f.rsplit("/", 1)[-1] for f in fused)


def _node_row(n: dict) -> dict:
    dense = int(n.get("macs_dense_per_row", n.get("macs_dense", 0)) or 0)
    live = int(n.get("macs_live_per_row", n.get("macs_live", dense)) or 0)
    run = dense if n.get("action") == "dense" else live  # (a node kept dense runs all its MACs, zeros included)
    return {
        "node": n.get("node", "?"), "op_type": n.get("op_type", "?"), "action": n.get("action", "?"),
        "weight": n.get("weight"), "pattern": n.get("pattern", "dense"),
        "density": float(n.get("density", 1.0)), "shape": list(n.get("shape") or []),
        "kernels": _kernel_names(n), "op_key": n.get("op_key"), "fused": list(n.get("fused") or []),
        "epilogue": _epilogue(n),
        "reason": n.get("reason", ""), "macs_dense_per_row": dense, "macs_live_per_row": live,
        "macs_run_per_row": run, "macs_saved_per_row": dense - run,
        "macs_saved_share": (dense - run) / dense if dense else 0.0,
        "time_ref_us": n.get("time_ref_us"), "time_engine_us": n.get("time_engine_us"),
    }


def _rows_of(meta: dict) -> int | None:
    """Rows (tokens) each linear processes at the measured input shapes, when it can be told:
    `meta["rows"]`, else from the first input of `meta["input_shapes"]`: all its elements for
    token inputs (`*_ids`, `*mask*`: [batch, sequence]), all but the last dim for features."""
    if meta.get("rows"):
        return int(meta["rows"])
    shapes = meta.get("input_shapes") or {}
    if not shapes:
        return None
    name, first = next(iter(shapes.items()))
    first = [int(d) for d in first]
    if not first:
        return None
    token_like = name.endswith("ids") or "mask" in name
    return int(math.prod(first)) if token_like else int(math.prod(first[:-1]))


def _normalise_verification(v: dict | None) -> dict | None:
    if v is None:
        return None
    if "outputs" in v:
        return {"passed": v.get("passed"), "tolerance": v.get("tolerance"), "outputs": dict(v["outputs"]),
                **{k: val for k, val in v.items() if k not in ("passed", "tolerance", "outputs")}}
    outs = {k: {"max_rel": float(x)} for k, x in v.items()
            if k not in ("passed", "tolerance") and isinstance(x, (int, float)) and not isinstance(x, bool)}
    return {"passed": v.get("passed"), "tolerance": v.get("tolerance"), "outputs": outs}


def _worst_rel(v: dict | None) -> float | None:
    if not v or not v.get("outputs"):
        return None
    vals = [o.get("max_rel") for o in v["outputs"].values() if isinstance(o, dict)]
    if any("error" in o for o in v["outputs"].values() if isinstance(o, dict)):
        return float("inf")
    vals = [x for x in vals if x is not None]
    return max(vals) if vals else None


def _latency_rows(lat: dict | None) -> list[dict]:
    if not lat or not lat.get("systems"):
        return []
    base = lat.get("baseline")
    rows = []
    for name, d in lat["systems"].items():
        rows.append({"system": name, "baseline": name == base, "median_ms": d.get("median_ms"),
                     "p90_ms": d.get("p90_ms"), "p99_ms": d.get("p99_ms"), "mean_ms": d.get("mean_ms"),
                     "n_runs": d.get("n_runs", len(d.get("runs") or [])), "speedup": d.get("speedup"),
                     "providers": d.get("providers"), "threads": d.get("threads")})
    return rows


def _candidate(lat: dict | None) -> str | None:
    """The system the report is about: "engine" if present, else the first non-baseline one."""
    if not lat or not lat.get("systems"):
        return None
    names = [n for n in lat["systems"] if n != lat.get("baseline")]
    return "engine" if "engine" in names else (names[0] if names else None)


def build_report(*, plan_nodes: list[dict], propagation: dict | None = None, latency: dict | None = None,
                 verification: dict | None = None, meta: dict | None = None) -> dict:
    """One JSON-able dict with everything the three report files show."""
    meta = dict(meta or {})
    nodes = [_node_row(n) for n in plan_nodes]
    md = sum(r["macs_dense_per_row"] for r in nodes)
    ml = sum(r["macs_live_per_row"] for r in nodes)
    mr = sum(r["macs_run_per_row"] for r in nodes)
    counts = {a: sum(r["action"] == a for r in nodes) for a in ("sparse", "compacted", "dense")}
    rows = _rows_of(meta)
    totals = {
        "nodes": len(nodes), **counts,
        "macs_dense_per_row": md, "macs_live_per_row": ml, "macs_run_per_row": mr, "macs_saved_per_row": md - mr,
        "macs_saved_share": (md - mr) / md if md else 0.0,
        "rows": rows, "macs_dense": md * rows if rows else None, "macs_run": mr * rows if rows else None,
        "scope": "the planned nodes (MatMul/Gemm with weights); attention products, norms and "
                 "element-wise ops are not counted",
    }
    ver = _normalise_verification(verification)
    worst = _worst_rel(ver)
    lat_rows = _latency_rows(latency)
    cand = _candidate(latency)
    base = latency.get("baseline") if latency else None
    fvt = None
    if cand and base:
        sb, sc = latency["systems"][base], latency["systems"][cand]
        speedup = sb["median_ms"] / sc["median_ms"] if sc.get("median_ms") else None
        fvt = {"system": cand, "baseline": base, "macs_saved_share": totals["macs_saved_share"],
               "time_saved_share": 1.0 - sc["median_ms"] / sb["median_ms"] if sb.get("median_ms") else None,
               "speedup": speedup,
               "speedup_if_time_followed_macs": 1.0 / (1.0 - totals["macs_saved_share"])
               if totals["macs_saved_share"] < 1.0 else None}
    passed = None if ver is None else (ver.get("passed") if ver.get("passed") is not None else
                                       (worst is not None and ver.get("tolerance") is not None
                                        and worst <= ver["tolerance"]))
    report = {
        "version": REPORT_VERSION, "meta": meta, "ok": passed is not False,
        "verdict": "", "nodes": nodes, "totals": totals, "latency": latency, "latency_rows": lat_rows,
        "flops_vs_time": fvt, "propagation": propagation, "verification": ver,
        "verification_max_rel": worst,
    }
    report["verdict"] = _verdict(report)
    return report


def _verdict(r: dict) -> str:
    t = r["totals"]
    parts = []
    if r["verification"] is not None and r["ok"] is False:
        worst = r["verification_max_rel"]
        head = (f"FAIL: the engine's outputs differ from the pruned dense model (max rel error "
                f"{_g(worst)} > tolerance {_g(r['verification'].get('tolerance'))})")
    else:
        head = "OK"
    parts.append(f"{t['sparse']} sparse, {t['compacted']} compacted, {t['dense']} dense of {t['nodes']} nodes; "
                 f"{t['macs_saved_share']:.1%} of their MACs removed")
    f = r["flops_vs_time"]
    if f and f.get("speedup"):
        sys_ = r["latency"]["systems"]
        slower = " (slower)" if f["speedup"] < 1.0 else ""
        parts.append(f"{f['system']} {f['speedup']:.2f}x{slower} vs {f['baseline']} (median "
                     f"{sys_[f['system']]['median_ms']:.3g} ms vs {sys_[f['baseline']]['median_ms']:.3g} ms)")
    else:
        parts.append("latency not measured")
    if r["verification"] is None:
        parts.append("not verified" + (" (no GPU here)" if r["meta"].get("not_run_here") else ""))
    elif r["ok"]:
        parts.append(f"verified, max rel error {_g(r['verification_max_rel'])}")
    return f"{head}: " + "; ".join(parts)


def _g(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


def _n(x) -> str:
    """A MAC count, compact: 1.2M, 345k, 999."""
    if x is None:
        return "n/a"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


# ----------------------------------------------------------------------------------------------
# shared table contents (markdown and HTML render the same cells)


def _node_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["node", "op", "pattern", "density", "action", "kernel", "fused", "MACs/row dense", "MACs/row live",
            "saved"]  # (saved: what the engine does not run; a node kept dense saves nothing)
    timed = any(n.get("time_ref_us") is not None for n in r["nodes"])
    if timed:
        head += ["time us dense", "time us engine", "time saved"]
    body = []
    for n in r["nodes"]:
        kern = ", ".join(f"{d}: {k}" for d, k in n["kernels"].items()) or (n["op_key"] or "-")
        row = [n["node"], n["op_type"], n["pattern"], f"{n['density']:.1%}", n["action"], kern,
               n["epilogue"] or "-", _n(n["macs_dense_per_row"]), _n(n["macs_live_per_row"]),
               f"{n['macs_saved_share']:.1%}" if n["macs_dense_per_row"] else "-"]
        if timed:
            a, b = n.get("time_ref_us"), n.get("time_engine_us")
            row += [f"{a:.1f}" if a is not None else "-", f"{b:.1f}" if b is not None else "-",
                    f"{1 - b / a:.1%}" if a and b is not None else "-"]
        body.append(row)
    return head, body


def _latency_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["system", "median ms", "p90 ms", "p99 ms", "runs", "speedup"]
    body = [[row["system"] + (" (baseline)" if row["baseline"] else ""), _g(row["median_ms"]), _g(row["p90_ms"]),
             _g(row["p99_ms"]), str(row["n_runs"]), f"{row['speedup']:.2f}x" if row["speedup"] else "-"]
            for row in r["latency_rows"]]
    return head, body


def _verification_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["output", "max abs error", "max rel error", "rel L2 error"]
    body = []
    for name, o in (r["verification"] or {}).get("outputs", {}).items():
        if "error" in o:
            body.append([name, o["error"], "-", "-"])
        else:
            body.append([name, _g(o.get("max_abs")), _g(o.get("max_rel")), _g(o.get("rel_l2"))])
    return head, body


def _propagation_items(p: dict | None) -> list[tuple[str, str]]:
    """Readable (key, value) lines of a propagation summary; bulky tables are left to the JSON."""
    if not p:
        return []
    out = []
    for key in ("weights", "linear_weights"):
        w = p.get(key)
        if isinstance(w, dict) and "share_dead_declared" in w:
            out.append((key.replace("_", " "), f"{w['share_dead_declared']:.1%} zero as declared -> "
                                               f"{w['share_dead_after']:.1%} dead after propagation "
                                               f"({_n(w.get('elements'))} elements)"))
    m = p.get("macs")
    if isinstance(m, dict) and "share_live_declared" in m:
        out.append(("MACs (MatMul/Gemm/Conv)", f"{1 - m['share_live_declared']:.1%} removable as declared -> "
                                               f"{1 - m['share_live_after']:.1%} after propagation"))
    tensors = p.get("tensors")
    if isinstance(tensors, list) and tensors and isinstance(tensors[0], dict):
        narrowed = [t for t in tensors if t.get("narrowed_by_count") or t.get("narrowed_by")]
        out.append(("tensors narrowed by propagation", f"{len(narrowed)} of {len(tensors)} listed "
                                                       "(per-tensor densities in report.json)"))
    for k, v in p.items():
        if k in ("weights", "linear_weights", "macs", "tensors", "log"):
            continue
        if isinstance(v, (list, tuple)):
            shown = ", ".join(map(str, v[:12])) + (f", ... ({len(v)} in all)" if len(v) > 12 else "")
            out.append((k.replace("_", " "), shown or "none"))
        elif isinstance(v, dict):
            scal = {a: b for a, b in v.items() if isinstance(b, (int, float, str, bool)) or b is None}
            if scal and len(scal) <= 12:
                out.append((k.replace("_", " "), ", ".join(f"{a}: {_g(b)}" for a, b in scal.items())))
        elif isinstance(v, float):
            out.append((k.replace("_", " "), _g(v)))
        else:
            out.append((k.replace("_", " "), str(v)))
    return out


def _meta_items(meta: dict) -> list[tuple[str, str]]:
    out = []
    for k, v in meta.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={'x'.join(map(str, b)) if isinstance(b, (list, tuple)) else b}" for a, b in v.items())
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        out.append((k.replace("_", " "), str(v)))
    return out


def _fvt_line(r: dict) -> str | None:
    f = r["flops_vs_time"]
    if not f or f.get("time_saved_share") is None:
        return None
    ideal = f.get("speedup_if_time_followed_macs")
    ts = f["time_saved_share"]
    time_text = f"{ts:.1%} of the end-to-end time saved" if ts >= 0 else f"{-ts:.1%} more end-to-end time"
    return (f"FLOPs saved beside time saved: {f['macs_saved_share']:.1%} of the planned nodes' MACs removed; "
            f"{time_text} ({f['system']} {f['speedup']:.2f}x vs "
            f"{f['baseline']}" + (f"; the MACs alone would predict {ideal:.2f}x" if ideal else "")
            + ").")


# ----------------------------------------------------------------------------------------------
# markdown


def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _latency_setup(lat: dict) -> str:
    """How the latency was measured: rounds, warm-up, providers (under CUDA graphs where so), threads."""
    first = next(iter(lat["systems"].values()))
    return (f"{lat.get('rounds', '?')} interleaved rounds after {lat.get('warmup', '?')} warm-up runs, one process; "
            f"providers {', '.join(first.get('providers') or ['?'])}"
            + (" under CUDA graphs" if lat.get("cuda_graph") else "")
            + (f", {first['threads']} intra-op threads" if first.get("threads") else "") + "."
            + (f" Not under CUDA graphs as asked: {lat['cuda_graph_refused']}." if lat.get("cuda_graph_refused")
               else ""))


def render_markdown(r: dict) -> str:
    t = r["totals"]
    out = ["# sparsify-onnx report", "", f"**{r['verdict']}**", ""]
    out += [f"- {k}: {_md_cell(v)}" for k, v in _meta_items(r["meta"])]
    out += ["", "## Plan per node", ""]
    if r["nodes"]:
        out.append(_md_table(*_node_table(r)))
    else:
        out.append("No node was planned.")
    out += ["", "## Totals", "",
            f"- nodes: {t['nodes']} ({t['sparse']} sparse, {t['compacted']} compacted, {t['dense']} dense)",
            f"- MACs per row (token): {_n(t['macs_dense_per_row'])} dense, {_n(t['macs_live_per_row'])} non-zero; "
            f"the engine runs {_n(t['macs_run_per_row'])}, **{t['macs_saved_share']:.1%} saved**"]
    if t["rows"]:
        out.append(f"- at the measured shapes ({t['rows']} rows): {_n(t['macs_dense'])} -> {_n(t['macs_run'])} MACs")
    out.append(f"- scope: {t['scope']}")
    out += ["", "## Latency", ""]
    if r["latency_rows"]:
        lat = r["latency"]
        out.append(_latency_setup(lat))
        out += ["", _md_table(*_latency_table(r))]
        line = _fvt_line(r)
        if line:
            out += ["", f"**{line}**"]
    else:
        out.append("Not measured.")
    prop = _propagation_items(r["propagation"])
    if prop:
        out += ["", "## Propagation", ""] + [f"- {k}: {_md_cell(v)}" for k, v in prop]
    out += ["", "## Verification", ""]
    if r["verification"] is None:
        out.append("Not run" + (f": {r['meta']['not_run_here']}" if r["meta"].get("not_run_here") else "."))
    else:
        v = r["verification"]
        out.append(f"Engine vs the pruned dense model in plain onnxruntime, tolerance {_g(v.get('tolerance'))}: "
                   + ("**passed**" if r["ok"] else "**FAILED**"))
        out += ["", _md_table(*_verification_table(r))]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# HTML (self-contained)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#1d2330}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.verdict{padding:.6em .9em;border-radius:6px;background:#e8f5e9;border:1px solid #a5d6a7}
.verdict.fail{background:#fdecea;border-color:#f5a3a3}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #d8dce3;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.bar{display:inline-block;height:9px;background:#5c8bd6;vertical-align:middle;margin-right:4px}
.cmp{display:grid;grid-template-columns:14em 1fr 5em;gap:4px 8px;align-items:center;max-width:700px}
.cmp .track{background:#eef0f4;height:14px}.cmp .fill{height:14px;background:#5c8bd6}
.cmp .fill.t{background:#e08a3c}dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dl.meta dt{color:#667}dl.meta dd{margin:0}
"""


def _h(x) -> str:
    return html.escape(str(x), quote=True)


def _html_table(head, body, num_cols=(), mono_cols=(), cls="") -> str:
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in body:
        cells = []
        for j, c in enumerate(row):
            klass = "num" if j in num_cols else ("mono" if j in mono_cols else "")
            cells.append(f'<td class="{klass}">{c if isinstance(c, _Raw) else _h(c)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def render_html(r: dict) -> str:
    t = r["totals"]
    fail = r["verification"] is not None and r["ok"] is False
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>sparsify-onnx report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>sparsify-onnx report</h1>",
             f'<p class="verdict{" fail" if fail else ""}">{_h(r["verdict"])}</p>']
    if r["meta"]:
        parts.append('<dl class="meta">' + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>"
                                                   for k, v in _meta_items(r["meta"])) + "</dl>")
    parts.append("<h2>Plan per node</h2>")
    if r["nodes"]:
        head, body = _node_table(r)
        for row, n in zip(body, r["nodes"]):
            w = max(0.0, min(1.0, n["density"])) * 60
            row[3] = _Raw(f'<span class="bar" style="width:{w:.0f}px"></span>{_h(row[3])}')
            if n["fused"]:  # the full list of fused nodes on hover
                row[6] = _Raw(f'<span title="{_h(chr(10).join(n["fused"]))}">{_h(row[6])}</span>')
        parts.append(_html_table(head, body, num_cols=(3, 7, 8, 9), mono_cols=(0, 5), cls="nodes"))
    else:
        parts.append("<p>No node was planned.</p>")
    parts.append("<h2>Totals</h2><ul>"
                 f"<li>nodes: {t['nodes']} ({t['sparse']} sparse, {t['compacted']} compacted, {t['dense']} dense)</li>"
                 f"<li>MACs per row (token): {_h(_n(t['macs_dense_per_row']))} dense, "
                 f"{_h(_n(t['macs_live_per_row']))} non-zero; the engine runs {_h(_n(t['macs_run_per_row']))}, "
                 f"<b>{t['macs_saved_share']:.1%} saved</b></li>"
                 + (f"<li>at the measured shapes ({t['rows']} rows): {_h(_n(t['macs_dense']))} &rarr; "
                    f"{_h(_n(t['macs_run']))} MACs</li>" if t["rows"] else "")
                 + f"<li>scope: {_h(t['scope'])}</li></ul>")
    parts.append("<h2>Latency</h2>")
    if r["latency_rows"]:
        lat = r["latency"]
        parts.append(f"<p>{_h(_latency_setup(lat))}</p>")
        parts.append(_html_table(*_latency_table(r), num_cols=(1, 2, 3, 4, 5), cls="latency"))
        f = r["flops_vs_time"]
        if f and f.get("time_saved_share") is not None:
            ms, ts = max(0.0, f["macs_saved_share"]), max(0.0, min(1.0, f["time_saved_share"]))
            parts.append("<h3>FLOPs saved beside time saved</h3><div class=\"cmp\">"
                         f"<span>MACs saved (planned nodes)</span><div class=\"track\"><div class=\"fill\" "
                         f"style=\"width:{ms * 100:.1f}%\"></div></div><span>{ms:.1%}</span>"
                         f"<span>time saved (end to end)</span><div class=\"track\"><div class=\"fill t\" "
                         f"style=\"width:{ts * 100:.1f}%\"></div></div><span>{f['time_saved_share']:.1%}</span>"
                         "</div>")
            parts.append(f"<p>{_h(_fvt_line(r))}</p>")
    else:
        parts.append("<p>Not measured.</p>")
    prop = _propagation_items(r["propagation"])
    if prop:
        parts.append("<h2>Propagation</h2><ul>" + "".join(f"<li>{_h(k)}: {_h(v)}</li>" for k, v in prop) + "</ul>")
    parts.append("<h2>Verification</h2>")
    if r["verification"] is None:
        parts.append("<p>Not run" + (f": {_h(r['meta']['not_run_here'])}</p>" if r["meta"].get("not_run_here")
                                     else ".</p>"))
    else:
        v = r["verification"]
        parts.append(f"<p>Engine vs the pruned dense model in plain onnxruntime, tolerance "
                     f"{_h(_g(v.get('tolerance')))}: <b>{'passed' if r['ok'] else 'FAILED'}</b></p>")
        parts.append(_html_table(*_verification_table(r), num_cols=(1, 2, 3), cls="verification"))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------
# files and console


def _json_default(x):
    try:
        import numpy as np
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:
        pass
    if isinstance(x, (set, tuple)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    return str(x)


def write_report(report: dict, out_dir: str | Path) -> list[Path]:
    """Write report.json, report.md and report.html into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "report.json": json.dumps(report, indent=2, default=_json_default, allow_nan=True) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    paths = []
    for name, text in texts.items():
        p = out / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def format_console(report: dict) -> str:
    """A few lines for the terminal: the plan in one line, the latency table, FLOPs vs time, verdict."""
    t = report["totals"]
    lines = [f"plan: {t['sparse']} sparse, {t['compacted']} compacted, {t['dense']} dense of {t['nodes']} nodes; "
             f"MACs/row {_n(t['macs_dense_per_row'])} -> {_n(t['macs_run_per_row'])} run "
             f"({t['macs_saved_share']:.1%} saved; {_n(t['macs_live_per_row'])} non-zero)"]
    by_pattern: dict[str, int] = {}
    for n in report["nodes"]:
        if n["action"] != "dense":
            by_pattern[n["pattern"]] = by_pattern.get(n["pattern"], 0) + 1
    if by_pattern:
        lines.append("  patterns: " + ", ".join(f"{k} x{v}" for k, v in sorted(by_pattern.items())))
    if report["latency_rows"]:
        w = max(len(r["system"]) for r in report["latency_rows"]) + len(" (baseline)")
        lines.append(f"  {'system':<{w}}  {'median ms':>10}  {'p90 ms':>9}  {'speedup':>8}"
                     + ("  (under CUDA graphs)" if (report.get("latency") or {}).get("cuda_graph") else ""))
        for r in report["latency_rows"]:
            name = r["system"] + (" (baseline)" if r["baseline"] else "")
            lines.append(f"  {name:<{w}}  {r['median_ms']:>10.3f}  {r['p90_ms']:>9.3f}  "
                         f"{(r['speedup'] or 0):>7.2f}x")
        line = _fvt_line(report)
        if line:
            lines.append("  " + line)
    v = report["verification"]
    if v is not None:
        lines.append(f"  verification: max rel error {_g(report['verification_max_rel'])} "
                     f"(tolerance {_g(v.get('tolerance'))}) " + ("ok" if report["ok"] else "FAILED"))
    meta = report.get("meta") or {}
    if meta.get("engine"):
        lines.append(f"  report: {Path(str(meta['engine'])) / 'report.md'} (and report.html)")
    lines.append(report["verdict"])
    return "\n".join(lines)
