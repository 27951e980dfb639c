"""propagate/engine.py: seeds, dense TeSAs, enabled=False, weights' own zeros, stats, report."""
from __future__ import annotations

import json

import numpy as np
from onnx import helper

from proputil import annotated_from, encoder_model, ffn_model, init, make_model, vi
from sparsify_onnx.propagate import Propagated, propagate
from sparsify_onnx.propagate.report import format_propagation, propagation_summary
from sparsify_onnx.tesa import TeSA


def test_every_tensor_gets_a_tesa_with_compact_masks():
    m = ffn_model()
    p = propagate(annotated_from(m))
    assert isinstance(p, Propagated)
    names = {i.name for i in m.graph.input} | {t.name for t in m.graph.initializer} | \
        {o for n in m.graph.node for o in n.output}
    assert names <= set(p.tesas)
    assert p.tesas["h1"].shape == ("batch", "seq", 32) and p.tesas["h1"].mask_shape == (1, 1, 32)


def test_enabled_false_returns_seeds_and_dense():
    m = ffn_model(prune_cols=[0, 1])
    seed = TeSA("x", ("batch", "seq", 16), np.ones((1, 1, 16), bool), np.ones((1, 1, 16), bool), dynamic=True)
    p = propagate(annotated_from(m, {"x": seed}), enabled=False)
    assert p.iterations == 0 and p.tesas["x"].dynamic
    assert np.asarray(p.tesas["W2"].used).all()  # no rule ran
    assert not np.broadcast_to(p.tesas["W1"].nonzero, (16, 32))[:, :2].any()  # the weight's own zeros
    assert seed.narrowed_by == []  # the annotated seeds are not mutated


def test_hand_pruned_unselected_weight_counts():
    m = ffn_model(prune_cols=[3])
    p = propagate(annotated_from(m))
    assert not np.broadcast_to(p.tesas["W2"].live, (32, 16))[3].any()


def test_stats_and_report():
    m = encoder_model(layers=1, hidden=32, heads=4, inter=64, prune={"ffn1_cols": {0: list(range(32))}})
    p = propagate(annotated_from(m))
    lw = p.stats["linear_weights"]
    assert lw["share_dead_after"] == 2 * lw["share_dead_declared"]
    mc = p.stats["macs"]
    assert mc["live_after"] < mc["live_declared"] < mc["dense"]
    node = [k for k in mc["per_node"] if k.endswith("MatMul")][0]
    assert mc["per_node"][node]["dense"] > 0
    t = p.stats["tensors"]["encoder.layer.0.output.dense.weight"]
    assert t["density"] == 0.5 and any("matmul" in r for r in t["narrowed_by"])
    summary = propagation_summary(p)
    json.dumps(summary)
    text = format_propagation(p)
    assert "linear weights dead" in text and "encoder.layer.0.output.dense.weight" in text
    assert "(2.00x)" in text


def test_macs_count_matches_a_hand_count():
    w = np.ones((4, 6), np.float32)
    w[:, :3] = 0  # half the columns zero
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", ["n", 4])], [vi("y", ["n", 6])],
                   [init("w", w)])
    p = propagate(annotated_from(m))
    mc = p.stats["macs"]
    assert (mc["dense"], mc["live_declared"], mc["live_after"]) == (24, 12, 12)
