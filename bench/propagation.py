"""Benchmark: TeSA propagation + channel compaction on a bert-base encoder.

    .venv/bin/python bench/propagation.py [--preset base] [--seq 128] [--threads 2] [--reps 30]

1. Builds the encoder with models/bert.py (`build_bert`, random weights; bert-base: 12 layers,
   hidden 768, 12 heads, FFN 3072) -- or, if models/bert.py is missing, the test builder.
2. Prunes 50% of the output channels of every FFN1 (`intermediate.dense`): the columns of
   the [K, N] weight with the smallest L2 norm, and the same entries of its bias (a removed
   neuron has no bias; see NOTES-propagation.md for the spec that prunes the weight only).
3. annotate() with a channel rule that keeps those zeros (declared 50% of FFN1),
   propagate() (timed, median of 3), compact().
4. Checks the compacted model against the pruned dense model in onnxruntime, and times
   plain onnxruntime CPU inference of the dense, pruned and compacted models in one
   interleaved run (same inputs, warm-up, median/p90).
Prints a markdown block for bench/NOTES-propagation.md and writes JSON next to it with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsify_onnx.graph import index_model  # noqa: E402
from sparsify_onnx.propagate import propagate  # noqa: E402
from sparsify_onnx.transform.compact import compact  # noqa: E402

SPEC_KEEP = """version: 1
rules:
  - select: {node: "/encoder/layer.*/intermediate/dense/MatMul"}
    pattern: channel
    axis: 1
propagate: true
"""


def build(preset: str, seed: int = 0):
    from models.bert import BertConfig, build_bert
    cfg = BertConfig.preset(preset)
    return build_bert(cfg, seed=seed, dynamic_shapes=True), cfg


def prune_ffn1(model: onnx.ModelProto, share: float = 0.5, with_bias: bool = True) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    for name, t in inits.items():
        if not name.endswith("intermediate.dense.weight"):
            continue
        w = numpy_helper.to_array(t).copy()
        cols = np.argsort(np.linalg.norm(w, axis=0), kind="stable")[: int(round(w.shape[1] * share))]
        w[:, cols] = 0
        t.CopyFrom(numpy_helper.from_array(w, name))
        bname = name[: -len("weight")] + "bias"
        if with_bias and bname in inits:
            b = numpy_helper.to_array(inits[bname]).copy()
            b[cols] = 0
            inits[bname].CopyFrom(numpy_helper.from_array(b, bname))
    return m


def annotated_for(model, spec_text):
    from sparsify_onnx.annotate import annotate
    from sparsify_onnx.spec import parse_spec
    return annotate(index_model(model), parse_spec(spec_text))


def session(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def timed_compare(models: dict, feeds, threads, reps, warmup=5):
    sess = {k: session(m, threads) for k, m in models.items()}
    for s in sess.values():
        for _ in range(warmup):
            s.run(None, feeds)
    times = {k: [] for k in sess}
    for _ in range(reps):  # interleaved: every system sees the same machine state
        for k, s in sess.items():
            t0 = time.perf_counter()
            s.run(None, feeds)
            times[k].append(time.perf_counter() - t0)
    out = {"_raw": times}
    for k, ts in times.items():
        ts = sorted(ts)
        out[k] = {"median_ms": 1e3 * statistics.median(ts), "p90_ms": 1e3 * ts[int(0.9 * (len(ts) - 1))],
                  "min_ms": 1e3 * ts[0]}
    return out


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    res: dict = {"command": " ".join([Path(sys.executable).name, "bench/propagation.py"] + (argv or sys.argv[1:])),
                 "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                             "onnxruntime": ort.__version__, "onnx": onnx.__version__}}
    t0 = time.perf_counter()
    dense, cfg = build(args.preset)
    pruned = prune_ffn1(dense)
    res["model"] = {"preset": args.preset, "layers": cfg.layers, "hidden": cfg.hidden, "heads": cfg.heads,
                    "intermediate": cfg.intermediate, "build_s": round(time.perf_counter() - t0, 2)}

    # the pipeline: annotate (keeps the zeros, declares the channel pattern) -> propagate -> compact
    an = annotated_for(pruned, SPEC_KEEP)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        p = propagate(an)
        times.append(time.perf_counter() - t0)
    lw = p.stats["linear_weights"]
    enc = {k: v for k, v in lw.items()}
    res["propagation"] = {"time_s_median": round(statistics.median(times), 3), "times_s": [round(t, 3) for t in times],
                          "rule_applications": p.iterations, "unknown_ops": p.unknown_ops,
                          "linear_weights": enc,
                          "dead_ratio_after_over_declared": lw["share_dead_after"] / lw["share_dead_declared"],
                          "macs_share_live_declared": p.stats["macs"]["share_live_declared"],
                          "macs_share_live_after": p.stats["macs"]["share_live_after"]}
    t0 = time.perf_counter()
    c = compact(p, fold_constants=False)  # biases are pruned: nothing to fold
    res["compaction"] = {"time_s": round(time.perf_counter() - t0, 2), "share_removed": c.stats["share_removed"],
                         "initializer_elements_before": c.stats["initializer_elements_before"],
                         "initializer_elements_after": c.stats["initializer_elements_after"],
                         "initializers_changed": c.stats["initializers_changed"]}
    onnx.checker.check_model(c.model)

    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, cfg.vocab,
                                       (args.batch, args.seq)).astype(np.int64),
             "attention_mask": np.ones((args.batch, args.seq), np.int64)}
    ref = session(an.loaded.model, args.threads).run(None, feeds)[0]
    got = session(c.model, args.threads).run(None, feeds)[0]
    res["max_rel_error"] = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))

    # the same model with the repository's spec (weight pruned by the rule, bias untouched):
    # propagation alone finds nothing new (gelu(b1[c]) is a live constant); compaction folds the
    # constant channels into FFN2's bias, propagates again, and removes them
    systems = {"dense (unpruned)": dense, "pruned, not compacted": an.loaded.model, "pruned + compacted": c.model}
    try:
        spec_path = ROOT / "models" / "specs" / "bert_ffn_channel50.yaml"
        an2 = annotated_for(dense, spec_path.read_text())
        p2 = propagate(an2)
        lw2 = p2.stats["linear_weights"]
        t0 = time.perf_counter()
        c2 = compact(p2)
        t_c2 = time.perf_counter() - t0
        lw2f = c2.stats.get("propagation_after_folding", {}).get("linear_weights") or lw2
        ref2 = session(an2.loaded.model, args.threads).run(None, feeds)[0]
        got2 = session(c2.model, args.threads).run(None, feeds)[0]
        res["repo_spec_bert_ffn_channel50"] = {
            "share_dead_declared": lw2["share_dead_declared"], "share_dead_after_propagation": lw2["share_dead_after"],
            "ratio_propagation": lw2["share_dead_after"] / lw2["share_dead_declared"],
            "folded_channels": sum(len(v) for v in c2.folded.values()),
            "share_dead_after_folding_and_propagation": lw2f["share_dead_after"],
            "ratio_after_folding": lw2f["share_dead_after"] / lw2f["share_dead_declared"],
            "propagation_time_s": round(p2.time_s, 3), "compaction_time_s": round(t_c2, 2),
            "share_removed": c2.stats["share_removed"],
            "max_rel_error_vs_pruned": float(np.abs(got2 - ref2).max() / max(np.abs(ref2).max(), 1e-30))}
        systems["repo spec: pruned, not compacted"] = an2.loaded.model
        systems["repo spec: folded + compacted"] = c2.model
    except Exception as e:  # the bench's main numbers do not depend on it
        res["repo_spec_bert_ffn_channel50"] = {"error": f"{type(e).__name__}: {e}"}

    lat = timed_compare(systems, feeds, args.threads, args.reps)
    raw = lat.pop("_raw")

    def paired(a, b):  # median over repetitions of t_a / t_b measured back to back (cancels load drift)
        return float(statistics.median(x / y for x, y in zip(raw[a], raw[b])))

    res["latency"] = lat
    res["paired_speedup_compacted_vs_pruned"] = paired("pruned, not compacted", "pruned + compacted")
    res["paired_speedup_compacted_vs_dense"] = paired("dense (unpruned)", "pruned + compacted")
    if "repo spec: folded + compacted" in raw:
        res["repo_spec_paired_speedup"] = paired("repo spec: pruned, not compacted", "repo spec: folded + compacted")
    base = lat["pruned, not compacted"]["median_ms"]
    res["speedup_compacted_vs_pruned"] = base / lat["pruned + compacted"]["median_ms"]
    res["speedup_compacted_vs_dense"] = lat["dense (unpruned)"]["median_ms"] / lat["pruned + compacted"]["median_ms"]
    if "repo spec: folded + compacted" in lat:
        res["repo_spec_speedup_compacted_vs_pruned"] = (lat["repo spec: pruned, not compacted"]["median_ms"]
                                                        / lat["repo spec: folded + compacted"]["median_ms"])

    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
