"""bench/report.py: the report dict, report.json / .md / .html and the console text, from a fake plan."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from sparsify_onnx.bench.report import build_report, format_console, render_html, render_markdown, write_report
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
from sparsify_onnx.pattern import Pattern
from sparsify_onnx.transform import NodePlan


def _plan_nodes() -> list[dict]:
    pat = Pattern("block", block=(32, 32))
    k = KernelSpec(op="linear", family="cpu_bcsr", device="cpu", dtype="fp32", pattern=pat, K=256, N=1024,
                   epilogue=Epilogue(bias=True, activation="gelu"), tile=(32, 32), arch=("native",),
                   tables_hash="ab" * 32)
    sparse = NodePlan(node="/encoder/layer.0/intermediate/dense/MatMul", op_type="MatMul", action="sparse",
                      weight="encoder.layer.0.intermediate.dense.weight", pattern="block32x32", density=0.2,
                      shape=(256, 1024), kernels={"cpu": k}, op_key=k.op_key(),
                      fused=["/encoder/layer.0/intermediate/dense/Add",
                             "/encoder/layer.0/intermediate/intermediate_act_fn/Mul_1"],
                      reason="cost model: 3.2x faster than dense", macs_dense=256 * 1024, macs_live=52428)
    compacted = NodePlan(node="/encoder/layer.0/output/dense/MatMul", op_type="MatMul", action="compacted",
                         weight="encoder.layer.0.output.dense.weight", pattern="channel0", density=0.5,
                         shape=(1024, 256), reason="dead rows removed", macs_dense=1024 * 256, macs_live=512 * 256)
    dense = NodePlan(node="/pooler/<dense>|MatMul", op_type="Gemm", action="dense", weight="pooler.weight",
                     shape=(256, 256), reason="not selected", macs_dense=65536, macs_live=65536)
    return [p.to_dict() for p in (sparse, compacted, dense)]


LATENCY = {
    "baseline": "pruned dense (onnxruntime)", "warmup": 10, "repeat": 50, "rounds": 50, "interleaved": True,
    "inputs": {"input_ids": {"shape": [8, 128], "dtype": "int64"}},
    "systems": {
        "pruned dense (onnxruntime)": {"median_ms": 30.0, "p90_ms": 31.5, "p99_ms": 33.0, "mean_ms": 30.2,
                                       "n_runs": 50, "providers": ["CPUExecutionProvider"], "threads": 2,
                                       "speedup": 1.0},
        "engine": {"median_ms": 15.0, "p90_ms": 16.0, "p99_ms": 18.0, "mean_ms": 15.1, "n_runs": 50,
                   "providers": ["CPUExecutionProvider"], "threads": 2, "speedup": 2.0},
    },
}
VERIFIED = {"passed": True, "tolerance": 1e-4,
            "outputs": {"last_hidden_state": {"max_abs": 2e-6, "max_rel": 4.5e-7, "rel_l2": 1e-7}},
            "input_shapes": {"input_ids": [8, 128], "attention_mask": [8, 128]}}
PROPAGATION = {"weights": {"elements": 10_000, "live_declared": 5000, "live_after": 4000,
                           "share_dead_declared": 0.5, "share_dead_after": 0.6},
               "macs": {"dense": 100, "share_live_declared": 0.4, "share_live_after": 0.3, "per_node": {"n": {}}},
               "unknown_ops": ["/custom/Foo (Foo)"], "iterations": 4, "log": ["rule x narrowed huge"],
               "tensors": [{"name": "huge", "narrowed_by": ["/a"], "narrowed_by_count": 1},
                           {"name": "other", "narrowed_by": [], "narrowed_by_count": 0}]}
META = {"model": "bert_small.onnx", "spec": "models/specs/bert_block80.yaml", "devices": ["cpu"],
        "decided_by": "cost model", "input_shapes": {"input_ids": [8, 128], "attention_mask": [8, 128]},
        "engine": "build/demo/engine"}


@pytest.fixture
def report():
    return build_report(plan_nodes=_plan_nodes(), propagation=PROPAGATION, latency=LATENCY,
                        verification=VERIFIED, meta=META)


def test_report_dict(report):
    assert {"version", "meta", "ok", "verdict", "nodes", "totals", "latency", "latency_rows", "flops_vs_time",
            "propagation", "verification", "verification_max_rel"} <= set(report)
    assert report["ok"] is True
    n0 = report["nodes"][0]
    assert n0["kernels"]["cpu"].startswith("sp_linear_cpu_bcsr_fp32_block32x32_k256_n1024")
    assert n0["macs_saved_per_row"] == 262144 - 52428
    t = report["totals"]
    assert (t["nodes"], t["sparse"], t["compacted"], t["dense"]) == (3, 1, 1, 1)
    dense, live = 2 * 262144 + 65536, 52428 + 131072 + 65536
    assert (t["macs_dense_per_row"], t["macs_live_per_row"]) == (dense, live)
    assert t["macs_saved_share"] == pytest.approx((dense - live) / dense)
    assert t["rows"] == 1024 and t["macs_dense"] == dense * 1024  # 8 x 128 tokens
    f = report["flops_vs_time"]
    assert f["system"] == "engine" and f["speedup"] == pytest.approx(2.0)
    assert f["time_saved_share"] == pytest.approx(0.5)
    assert report["verification_max_rel"] == pytest.approx(4.5e-7)
    assert report["verdict"].startswith("OK") and "2.00x" in report["verdict"]


def test_a_sparse_weight_kept_dense_saves_no_macs():
    """A 90% sparse weight the cost model kept dense runs all its MACs: the totals and the verdict say so."""
    nodes = [NodePlan(node="fc", op_type="MatMul", action="dense", weight="w", pattern="unstructured",
                      density=0.1, shape=(256, 256), reason="cost model: slower than dense",
                      macs_dense=65536, macs_live=6554).to_dict()]
    r = build_report(plan_nodes=nodes, meta={})
    t = r["totals"]
    assert (t["macs_live_per_row"], t["macs_run_per_row"], t["macs_saved_share"]) == (6554, 65536, 0.0)
    assert "0.0% of their MACs removed" in r["verdict"]
    assert "the engine runs 65.5k, **0.0% saved**" in render_markdown(r)


def test_write_report_files(tmp_path, report):
    paths = write_report(report, tmp_path / "engine")
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    data = json.loads((tmp_path / "engine" / "report.json").read_text())
    assert data["verdict"] == report["verdict"] and len(data["nodes"]) == 3
    assert data["nodes"][0]["fused"] == report["nodes"][0]["fused"]


def test_markdown_tables(report):
    md = render_markdown(report)
    lines = md.splitlines()
    start = lines.index("## Plan per node")
    table = [ln for ln in lines[start:lines.index("## Totals")] if ln.startswith("|")]
    assert len(table) == 2 + 3  # header, separator, one row per node
    assert table[0].startswith("| node | op | pattern | density | action | kernel | fused |")
    assert "| /encoder/layer.0/intermediate/dense/MatMul | MatMul | block32x32 | 20.0% | sparse |" in md
    assert "| bias + gelu (2 nodes) |" in md  # the fused epilogue, from the kernel spec
    assert "/pooler/<dense>\\|MatMul" in md  # a | in a cell is escaped, not a new column
    assert all(row.count(" | ") == table[0].count(" | ") for row in table[2:4])
    lat = [ln for ln in lines if ln.startswith("| engine |") or ln.startswith("| pruned dense")]
    assert len(lat) == 2 and "2.00x" in lat[1] and "15" in lat[1]
    assert "FLOPs saved beside time saved" in md and "50.0% of the end-to-end time saved" in md
    assert "| last_hidden_state | 2e-06 | 4.5e-07 | 1e-07 |" in md
    assert "unknown ops: /custom/Foo (Foo)" in md and "huge" not in md  # per-tensor tables stay in the JSON
    assert "tensors narrowed by propagation: 1 of 2 listed" in md and "rule x" not in md
    assert report["verdict"] in md


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.cells, self.attrs = [], [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag in ("td", "th"):
            self._in_td = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.cells[-1] += data


def test_html_is_self_contained_and_has_the_tables(report):
    doc = render_html(report)
    p = _Collect()
    p.feed(doc)
    assert doc.startswith("<!DOCTYPE html>") and p.tags.count("table") == 3  # nodes, latency, verification
    assert "/encoder/layer.0/intermediate/dense/MatMul" in p.cells
    assert "/pooler/<dense>|MatMul" in p.cells  # escaped in the source, intact as text
    assert "<dense>" not in doc
    assert "engine" in p.cells and "2.00x" in p.cells and "bias + gelu (2 nodes)" in p.cells
    assert ("span", "title", "/encoder/layer.0/intermediate/dense/Add\n"
            "/encoder/layer.0/intermediate/intermediate_act_fn/Mul_1") in p.attrs
    assert not re.search(r"https?://|<script|<link|<img|@import|url\(", doc)
    assert not [a for a in p.attrs if a[1] in ("src", "href")]
    assert "FLOPs saved beside time saved" in doc


def test_failed_verification_and_missing_parts():
    bad = {"passed": False, "tolerance": 1e-4,
           "outputs": {"y": {"max_abs": 0.3, "max_rel": 0.02, "rel_l2": 0.01}, "z": {"error": "non-finite values"}}}
    r = build_report(plan_nodes=_plan_nodes(), propagation=None, latency=None, verification=bad, meta={})
    assert r["ok"] is False and r["verdict"].startswith("FAIL")
    assert "latency not measured" in r["verdict"] and r["latency_rows"] == [] and r["flops_vs_time"] is None
    md, doc = render_markdown(r), render_html(r)
    assert "**FAILED**" in md and "non-finite values" in md and "Not measured." in md
    assert 'class="verdict fail"' in doc
    r = build_report(plan_nodes=[], propagation=None, latency=None, verification=None, meta={})
    assert r["ok"] is True and "not verified" in r["verdict"] and r["totals"]["macs_saved_share"] == 0.0
    assert "No node was planned." in render_markdown(r)
    flat = build_report(plan_nodes=[], verification={"y": 3e-5, "tolerance": 1e-4}, meta={})
    assert flat["verification_max_rel"] == pytest.approx(3e-5) and flat["ok"] is True


def test_console(report):
    text = format_console(report)
    lines = text.splitlines()
    assert lines[0].startswith("plan: 1 sparse, 1 compacted, 1 dense of 3 nodes")
    assert any("engine" in ln and "15.000" in ln and "2.00x" in ln for ln in lines)
    assert any("verification: max rel error 4.5e-07" in ln and ln.endswith("ok") for ln in lines)
    assert "build/demo/engine/report.md" in text
    assert lines[-1] == report["verdict"] and len(lines) <= 12


def test_slower_engine_is_said_plainly():
    slow = json.loads(json.dumps(LATENCY))
    slow["systems"]["engine"]["median_ms"] = 40.0
    r = build_report(plan_nodes=_plan_nodes(), latency=slow, verification=VERIFIED, meta={})
    assert "0.75x (slower)" in r["verdict"] and r["flops_vs_time"]["time_saved_share"] == pytest.approx(-1 / 3)
    assert "33.3% more end-to-end time" in render_markdown(r)


def test_per_node_times_from_the_profiler():
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    import onnxruntime as ort
    from sparsify_onnx.bench.profile import attach_node_times, node_times
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Relu", ["m"], ["y"], name="act")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    t = node_times(m.SerializeToString(), {"x": np.ones((4, 16), np.float32)}, providers=["CPUExecutionProvider"],
                   make_options=lambda: so, runs=3)
    assert set(t) >= {"mm", "act"} and all(v >= 0 for v in t.values())
    nodes = [{"node": "mm", "fused": ["act"]}, {"node": "gone", "fused": []}]
    attach_node_times(nodes, {"mm": 3.0, "act": 1.0}, {"mm": 1.5})
    assert nodes[0]["time_ref_us"] == 4.0 and nodes[0]["time_engine_us"] == 1.5
    assert "time_ref_us" not in nodes[1]
    r = build_report(plan_nodes=[{"node": "mm", "op_type": "MatMul", "action": "sparse",
                                  "macs_dense_per_row": 10, "macs_live_per_row": 2, **nodes[0]}], meta={})
    md = render_markdown(r)
    assert "time saved" in md and "62.5%" in md


def test_per_node_times_of_a_cuda_engine_are_the_tuners_gpu_times():
    """On the CUDA provider onnxruntime's profiler times only each node's launch on the CPU, so a CUDA engine's
    report takes its sparse nodes' times from tuning (sparse kernel against cuBLAS + the unfused passes, CUDA events)
    and says where they come from; nodes kept dense or not timed get none."""
    from sparsify_onnx.bench.profile import GPU_TIMES_NOTE, attach_kernel_times
    nodes = [{"node": "a", "action": "sparse"}, {"node": "b", "action": "dense"}, {"node": "c", "action": "sparse"}]
    attach_kernel_times(nodes, {"a": (5e-6, 20e-6), "b": (9e-6, 8e-6)})
    assert nodes[0]["time_engine_us"] == pytest.approx(5.0) and nodes[0]["time_ref_us"] == pytest.approx(20.0)
    assert "time_ref_us" not in nodes[1] and "time_ref_us" not in nodes[2]
    r = build_report(plan_nodes=[{"op_type": "MatMul", "macs_dense_per_row": 10, "macs_live_per_row": 2, **n}
                                 for n in nodes], meta={"per_node_times": GPU_TIMES_NOTE})
    md = render_markdown(r)
    assert "75.0%" in md and "CUDA events" in md


def test_per_node_times_leave_out_warmup_runs():
    """A node whose first call does one-time work (cuSPARSELt algorithm timing) is not charged for it."""
    from sparsify_onnx.bench.profile import aggregate_node_events
    ev = [{"cat": "Node", "name": "a_kernel_time", "ts": t, "dur": d} for t, d in ((0, 8e6), (10, 30.0), (20, 50.0))]
    ev += [{"cat": "Node", "name": "b_kernel_time", "ts": 5, "dur": 7.0}, {"cat": "Session", "name": "x", "dur": 1e9}]
    got = aggregate_node_events(ev, warmup=1)
    assert got["a"] == 40.0  # the 8-second first run is left out
    assert got["b"] == 7.0   # fewer runs than the warm-up: keep what there is


def test_latency_under_cuda_graphs_is_said():
    """A report timed under onnxruntime's CUDA graphs (convert --cuda-graph) says so beside the providers, in
    markdown and HTML; a plain timing does not."""
    lat = dict(LATENCY, cuda_graph=True)
    r = build_report(plan_nodes=_plan_nodes(), propagation=PROPAGATION, latency=lat, verification=VERIFIED,
                     meta=META)
    assert "providers CPUExecutionProvider under CUDA graphs" in render_markdown(r)
    assert "under CUDA graphs" in render_html(r)
    plain = build_report(plan_nodes=_plan_nodes(), propagation=PROPAGATION, latency=LATENCY,
                         verification=VERIFIED, meta=META)
    assert "under CUDA graphs" in format_console(r)
    assert "CUDA graphs" not in render_markdown(plain) and "CUDA graphs" not in render_html(plain)
    assert "CUDA graphs" not in format_console(plain)
