"""Per-node time from onnxruntime's profiler, so the report can put time saved beside FLOPs saved
for every node, not only in total.

`node_times(model, feeds, sess_options_factory, providers, runs)` opens a profiling session, runs the
model, and returns {node name: mean microseconds per run} of the node's kernel time.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict


def node_times(model, feeds: dict, *, make_options, providers, runs: int = 10, warmup: int = 2) -> dict:
    """`model`: a path or serialized bytes; `make_options()`: a fresh SessionOptions (threads, custom ops)."""
    import onnxruntime as ort
    so = make_options()
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "sparsify")
        sess = ort.InferenceSession(model, sess_options=so, providers=list(providers))
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        with open(path) as f:
            events = json.load(f)
    return aggregate_node_events(events, warmup)


def aggregate_node_events(events: list[dict], warmup: int) -> dict:
    """{node: mean kernel microseconds per run}, leaving out each node's first ``warmup`` runs: a first call
    can do one-time work (the n:m kernels time cuSPARSELt's algorithms there), which is not per-run time."""
    per_node: dict[str, list[float]] = defaultdict(list)
    for e in sorted(events, key=lambda e: float(e.get("ts", 0))):
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_node[e["name"][: -len("_kernel_time")]].append(float(e.get("dur", 0)))
    out = {}
    for k, v in per_node.items():
        kept = v[warmup:] if len(v) > warmup else v
        out[k] = sum(kept) / len(kept)
    return out


PROFILER_NOTE = "onnxruntime's profiler, mean kernel time per run of each node and of the nodes fused into it"
GPU_TIMES_NOTE = ("the GPU kernel times tuning measured with CUDA events (sparse nodes): the node's sparse kernel "
                  "against cuBLAS's GEMM of the same shape plus the element-wise passes the kernel fuses (their "
                  "time modelled); onnxruntime's profiler gives only CPU-side launch times on the CUDA provider")


def attach_kernel_times(plan_nodes: list[dict], gpu_times: dict) -> None:
    """Per sparse plan node of a CUDA engine: ``gpu_times`` {node: (sparse seconds, dense seconds)} (from
    ``tune.plan.measured_decisions``) as the report's dense and engine times, in microseconds per run."""
    for p in plan_nodes:
        t = gpu_times.get(p["node"])
        if t and p.get("action") == "sparse":
            p["time_ref_us"], p["time_engine_us"] = t[1] * 1e6, t[0] * 1e6


def attach_node_times(plan_nodes: list[dict], ref_times: dict, eng_times: dict) -> None:
    """Per plan node: the reference time of the node and every node fused into it, against the engine's
    time for the node that replaced them (same name), in microseconds per run."""
    for p in plan_nodes:
        group = [p["node"], *p.get("fused", [])]
        ref = sum(ref_times.get(n, 0.0) for n in group)
        eng = eng_times.get(p["node"])
        if ref and eng is not None:
            p["time_ref_us"] = ref
            p["time_engine_us"] = eng + eng_times.get(f"{p['node']}/TransposeA", 0.0)
