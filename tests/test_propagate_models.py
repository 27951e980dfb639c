"""The cases of issue 3 point 6: propagation + compaction on models built in the test."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "propagate"))
from proputil import (annotated_from, assert_same_outputs, conv_model, encoder_feeds, encoder_model,  # noqa: E402
                      ffn_model, helper, init, make_model, run, vi)

from sparsify_onnx.propagate import propagate  # noqa: E402
from sparsify_onnx.transform.compact import compact  # noqa: E402


def dead_rows(p, name, axis):
    live = np.broadcast_to(p.tesas[name].live, p.tesas[name].mask_shape)
    other = tuple(a for a in range(live.ndim) if a != axis)
    return set(np.nonzero(~live.any(axis=other))[0].tolist())


# ---- FFN ---------------------------------------------------------------------------------
def test_ffn1_output_channels_kill_ffn2_input_rows_and_both_shrink():
    cols = [0, 3, 4, 9, 17, 30]
    m = ffn_model(hidden=16, inter=32, prune_cols=cols, ln=True)
    p = propagate(annotated_from(m))
    assert dead_rows(p, "W1", 1) == set(cols)
    assert dead_rows(p, "W2", 0) == set(cols)  # FFN2's input rows die too
    assert p.stats["linear_weights"]["share_dead_after"] == pytest.approx(
        2 * p.stats["linear_weights"]["share_dead_declared"])
    assert any("matmul" in r for r in p.tesas["W2"].narrowed_by)
    c = compact(p)
    assert c.removed["W1"] == {1: cols} and c.removed["W2"] == {0: cols} and c.removed["b1"] == {0: cols}
    onnx.checker.check_model(c.model, full_check=True)
    shapes = {t.name: tuple(t.dims) for t in c.model.graph.initializer}
    assert shapes["W1"] == (16, 26) and shapes["W2"] == (26, 16)
    assert "ln_s" in shapes and shapes["ln_s"] == (16,)  # LayerNorm's axis never shrinks
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 5, 16)).astype(np.float32)}
    assert_same_outputs(m, c.model, feeds)


def test_ffn1_channel_with_live_bias_stays_live_unless_folded():
    # Gelu(b1[c]) is a non-zero constant: FFN2's rows still matter, nothing may be removed ...
    m = ffn_model(prune_cols=[1, 2], prune_bias=False)
    p = propagate(annotated_from(m))
    assert dead_rows(p, "W2", 0) == set()
    assert compact(p, fold_constants=False).removed == {}
    # ... until the constant is folded into FFN2's bias: then the channel is zero and goes
    c = compact(p)
    assert c.folded == {"b1": [1, 2]}
    assert c.removed["W2"] == {0: [1, 2]}
    lw = c.stats["propagation_after_folding"]["linear_weights"]
    assert lw["share_dead_after"] == 2 * lw["share_dead_declared"]
    feeds = {"x": np.random.default_rng(5).standard_normal((2, 3, 16)).astype(np.float32)}
    assert_same_outputs(m, c.model, feeds)


# ---- conv -> BN -> Relu -> conv -----------------------------------------------------------
def test_conv_bn_relu_conv_channels_die_and_shrink():
    cols = [1, 4, 6]
    m = conv_model(prune=cols)
    p = propagate(annotated_from(m))
    assert dead_rows(p, "conv2.weight", 1) == set(cols)
    for n in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert dead_rows(p, n, 0) == set(cols)
    c = compact(p)
    onnx.checker.check_model(c.model, full_check=True)
    assert c.removed["conv1.weight"] == {0: cols} and c.removed["conv2.weight"] == {1: cols}
    assert c.removed["bn.running_var"] == {0: cols}
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 4, 6, 6)).astype(np.float32)}
    assert_same_outputs(m, c.model, feeds)


def test_bn_shift_makes_pruned_channel_live():
    # beta - mean * scale / sqrt(var + eps) != 0: the channel is a non-zero constant after BN
    m = conv_model(prune=[1, 4], bn_shift_zero=False)
    p = propagate(annotated_from(m))
    assert dead_rows(p, "conv2.weight", 1) == set()
    assert not compact(p).removed


def test_residual_add_with_graph_input_stops_propagation():
    m = conv_model(c_in=8, c_mid=8, prune=[1, 4], residual="input")
    p = propagate(annotated_from(m))
    # r1 channels are zero, but a1 = r1 + x is not: conv2's input channels stay used
    assert dead_rows(p, "r1", 1) == {1, 4}
    assert dead_rows(p, "conv2.weight", 1) == set()
    c = compact(p)
    assert "conv1.weight" not in c.removed  # the chain includes the graph input x: blocked
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 8, 6, 6)).astype(np.float32)}
    assert_same_outputs(m, c.model, feeds)


def test_residual_after_conv2_keeps_its_outputs_but_inputs_shrink():
    m = conv_model(c_in=6, c_mid=8, c_out=6, prune=[0, 5], residual="output")
    p = propagate(annotated_from(m))
    c = compact(p)
    assert c.removed["conv2.weight"] == {1: [0, 5]}  # input channels removed, outputs kept
    feeds = {"x": np.random.default_rng(4).standard_normal((1, 6, 6, 6)).astype(np.float32)}
    assert_same_outputs(m, c.model, feeds)


# ---- attention heads ------------------------------------------------------------------------
def test_v_head_followed_to_output_projection_rows_and_qk():
    hidden, heads = 32, 4
    dh = hidden // heads
    m = encoder_model(layers=1, hidden=hidden, heads=heads, inter=64, prune={"v_heads": {0: [2]}})
    p = propagate(annotated_from(m))
    head = set(range(2 * dh, 3 * dh))
    pre = "encoder.layer.0.attention"
    assert dead_rows(p, f"{pre}.output.dense.weight", 0) == head  # rows of the output projection
    assert dead_rows(p, f"{pre}.self.query.weight", 1) == head  # Q and K columns are unused too
    assert dead_rows(p, f"{pre}.self.key.weight", 1) == head
    c = compact(p)
    onnx.checker.check_model(c.model, full_check=True)
    for n in ("query", "key", "value"):
        assert c.removed[f"{pre}.self.{n}.weight"] == {1: sorted(head)}
    assert c.removed[f"{pre}.output.dense.weight"] == {0: sorted(head)}
    assert_same_outputs(m, c.model, encoder_feeds(m))


def test_qk_only_pruning_does_not_kill_the_head():
    # Q and K zero on a head -> uniform softmax, non-zero context: V and the output rows stay live
    m = encoder_model(layers=1, hidden=32, heads=4, inter=64, prune={"qk_heads": {0: [1]}})
    p = propagate(annotated_from(m))
    assert dead_rows(p, "encoder.layer.0.attention.output.dense.weight", 0) == set()
    assert dead_rows(p, "encoder.layer.0.attention.self.value.weight", 1) == set()
    c = compact(p)
    assert_same_outputs(m, c.model, encoder_feeds(m))


def test_encoder_mixed_pruning_compacts_to_same_outputs():
    m = encoder_model(layers=3, hidden=48, heads=6, inter=96,
                      prune={"v_heads": {0: [0, 5], 2: [3]}, "ffn1_cols": {1: list(range(0, 96, 3)), 2: [5, 6]}})
    p = propagate(annotated_from(m))
    c = compact(p)
    onnx.checker.check_model(c.model, full_check=True)
    assert c.stats["share_removed"] > 0.1
    for seed in range(2):
        assert_same_outputs(m, c.model, encoder_feeds(m, batch=2, seq=5 + seed, seed=seed), rtol=1e-5, atol=1e-5)


def test_encoder_weight_only_channel_pruning_folds_biases():
    # like models/specs/bert_ffn_channel50.yaml: FFN1 weight columns pruned, biases untouched
    m = encoder_model(layers=2, hidden=32, heads=4, inter=64,
                      prune={"ffn1_cols": {0: list(range(0, 64, 2)), 1: list(range(32))}, "prune_bias": False})
    p = propagate(annotated_from(m))
    assert p.stats["linear_weights"]["share_dead_after"] == p.stats["linear_weights"]["share_dead_declared"]
    assert p.stats["constant_channels"] == {"encoder.layer.0.intermediate.dense.bias": 32,
                                            "encoder.layer.1.intermediate.dense.bias": 32}
    c = compact(p)
    assert set(c.folded) == {"encoder.layer.0.intermediate.dense.bias", "encoder.layer.1.intermediate.dense.bias"}
    lw = c.stats["propagation_after_folding"]["linear_weights"]
    assert lw["share_dead_after"] == 2 * lw["share_dead_declared"]
    assert c.removed["encoder.layer.1.output.dense.weight"] == {0: list(range(32))}
    assert_same_outputs(m, c.model, encoder_feeds(m), rtol=1e-5, atol=1e-5)


# ---- no false zeros -----------------------------------------------------------------------
@pytest.mark.parametrize("op", ["Softmax", "LayerNormalization", "Sigmoid", "BiasAdd"])
def test_no_false_zeros(op):
    """An all-zero input never makes these outputs zero."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"], name="mm")]  # W all zero -> z all zero
    inits = [init("W", np.zeros((4, 6), np.float32))]
    if op == "Softmax":
        nodes.append(helper.make_node("Softmax", ["z"], ["y"], axis=-1))
    elif op == "LayerNormalization":
        nodes.append(helper.make_node("LayerNormalization", ["z", "s", "b"], ["y"], axis=-1))
        inits += [init("s", np.ones(6, np.float32)), init("b", np.full(6, 0.5, np.float32))]
    elif op == "Sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["y"]))
    else:
        nodes.append(helper.make_node("Add", ["z", "b"], ["y"]))
        inits.append(init("b", np.linspace(0.1, 1, 6).astype(np.float32)))
    m = make_model(nodes, [vi("x", ["batch", 4])], [vi("y", ["batch", 6])], inits)
    p = propagate(annotated_from(m))
    assert not np.broadcast_to(p.tesas["z"].nonzero, (1, 6)).any()  # the product is known zero
    assert np.broadcast_to(p.tesas["y"].nonzero, (1, 6)).all()
    out = run(m, {"x": np.ones((2, 4), np.float32)})["y"]
    assert (out != 0).all()


def test_layernorm_scale_zero_column_is_zero_and_row_stays_used():
    m = make_model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)],
                   [vi("x", ["b", 5])], [vi("y", ["b", 5])],
                   [init("s", np.array([1, 0, 1, 1, 1], np.float32)), init("b", np.array([0, 0, 1, 0, 0], np.float32))])
    p = propagate(annotated_from(m))
    assert np.broadcast_to(p.tesas["y"].nonzero, (1, 5)).tolist() == [[True, False, True, True, True]]
    assert np.broadcast_to(p.tesas["x"].used, (1, 5)).all()  # no narrowing across the normalised axis


# ---- bert-base speed ------------------------------------------------------------------------
@pytest.mark.slow
def test_bert_base_propagates_under_5_seconds():
    cols = {L: list(range(0, 3072, 2)) for L in range(12)}
    m = encoder_model(layers=12, hidden=768, heads=12, inter=3072, prune={"ffn1_cols": cols})
    an = annotated_from(m)
    t0 = time.perf_counter()
    p = propagate(an)
    dt = time.perf_counter() - t0
    assert dt < 5.0, dt
    lw = p.stats["linear_weights"]
    assert lw["share_dead_after"] >= 2 * lw["share_dead_declared"] - 1e-9


# ---- the models/ builders -----------------------------------------------------------------------
def test_models_bert_tiny_ffn_channels_propagate_fold_and_compact():
    bert = pytest.importorskip("models.bert")
    from onnx import numpy_helper

    cfg = bert.BertConfig.preset("tiny")
    m = bert.build_bert(cfg, dynamic_shapes=True)
    for t in m.graph.initializer:  # half of every FFN1's output channels, weight only (like the repo spec)
        if t.name.endswith("intermediate.dense.weight"):
            w = numpy_helper.to_array(t).copy()
            w[:, ::2] = 0
            t.CopyFrom(numpy_helper.from_array(w, t.name))
    p = propagate(annotated_from(m))
    assert p.unknown_ops == []
    c = compact(p)
    lw = c.stats["propagation_after_folding"]["linear_weights"]
    assert lw["share_dead_after"] >= 2 * lw["share_dead_declared"] - 1e-12
    onnx.checker.check_model(c.model, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, cfg.vocab, (2, 9)).astype(np.int64),
             "attention_mask": np.ones((2, 9), np.int64)}
    assert_same_outputs(m, c.model, feeds, rtol=1e-5, atol=1e-5)
