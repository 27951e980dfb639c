"""Channel compaction (transform/compact.py): shapes, blocking, zeroing, numerical equality."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).parent / "propagate"))
from proputil import (annotated_from, assert_same_outputs, encoder_feeds, encoder_model, ffn_model,  # noqa: E402
                      helper, init, make_model, vi)

from sparsify_onnx.propagate import propagate  # noqa: E402
from sparsify_onnx.transform.compact import CompactResult, compact  # noqa: E402


def _inits(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _compact(model):
    return compact(propagate(annotated_from(model)))


def test_gemm_transb_chain_shrinks_rows_of_stored_weight():
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((12, 8)).astype(np.float32)  # stored [N, K] (transB=1)
    b1 = rng.standard_normal(12).astype(np.float32)
    w2 = rng.standard_normal((5, 12)).astype(np.float32)
    dead = [2, 3, 11]
    w1[dead] = 0
    b1[dead] = 0
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, alpha=0.7),
                    helper.make_node("Relu", ["h"], ["r"]),
                    helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)],
                   [vi("x", ["n", 8])], [vi("y", ["n", 5])],
                   [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", np.ones(5, np.float32))])
    c = _compact(m)
    assert isinstance(c, CompactResult)
    assert c.removed == {"w1": {0: dead}, "b1": {0: dead}, "w2": {1: dead}}
    onnx.checker.check_model(c.model, full_check=True)
    assert _inits(c.model)["w2"].shape == (5, 9)
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((3, 8)).astype(np.float32)})
    json.dumps(c.removed)
    json.dumps(c.stats)


def test_depthwise_conv_group_follows_the_channels():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((6, 3, 1, 1)).astype(np.float32)
    w1[[0, 4]] = 0
    wd = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((2, 6, 1, 1)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"]),
                    helper.make_node("Conv", ["a", "wd"], ["b"], group=6, pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["b"], ["r"]),
                    helper.make_node("Conv", ["r", "w2"], ["y"])],
                   [vi("x", [1, 3, 5, 5])], [vi("y", [1, 2, 5, 5])],
                   [init("w1", w1), init("wd", wd), init("w2", w2)])
    c = _compact(m)
    assert c.removed["wd"] == {0: [0, 4]} and c.removed["w2"] == {1: [0, 4]}
    group = [a.i for n in c.model.graph.node for a in n.attribute if a.name == "group"]
    assert group == [4]
    onnx.checker.check_model(c.model, full_check=True)
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32)})


def test_graph_output_blocks_the_chain():
    m = ffn_model(prune_cols=[1, 2])
    m.graph.output.append(vi("h1", ["batch", "seq", 32]))  # the intermediate is a graph output
    c = _compact(m)
    assert c.removed == {}


def test_not_live_weight_elements_are_zeroed_when_the_chain_is_blocked():
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((6, 6)).astype(np.float32)
    w2 = rng.standard_normal((6, 4)).astype(np.float32)
    w2[[1, 3]] = 0  # rows of W2 dead -> columns of W1 unused, but h + x blocks removal
    m = make_model([helper.make_node("MatMul", ["x", "w1"], ["h"]),
                    helper.make_node("Add", ["h", "x"], ["s"]),
                    helper.make_node("MatMul", ["s", "w2"], ["y"])],
                   [vi("x", ["n", 6])], [vi("y", ["n", 4])], [init("w1", w1), init("w2", w2)])
    c = _compact(m)
    assert c.removed == {}
    new_w1 = _inits(c.model)["w1"]
    assert (new_w1[:, [1, 3]] == 0).all() and (new_w1[:, [0, 2, 4, 5]] != 0).all()
    assert c.stats["weights_zeroed_not_live"] == 12
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((3, 6)).astype(np.float32)})


def test_partial_head_is_not_removed_but_whole_heads_are():
    hidden, heads = 32, 4
    m = encoder_model(layers=1, hidden=hidden, heads=heads, inter=64)
    # zero half of head 1's V columns (and bias): not a whole head -> nothing removed in that chain
    for t in m.graph.initializer:
        if t.name.endswith("self.value.weight"):
            a = numpy_helper.to_array(t).copy()
            a[:, 8:12] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
        if t.name.endswith("self.value.bias"):
            a = numpy_helper.to_array(t).copy()
            a[8:12] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    c = _compact(m)
    assert not any("value" in k or "output.dense" in k for k in c.removed)
    assert_same_outputs(m, c.model, encoder_feeds(m))


def test_shared_reshape_constant_is_cloned_per_reader():
    m = encoder_model(layers=2, hidden=32, heads=4, inter=64, prune={"v_heads": {0: [1], 1: [0, 2]}})
    c = _compact(m)
    inits = _inits(c.model)
    clones = {k: v.tolist() for k, v in inits.items() if k.startswith("c_heads_dh__compact")}
    assert sorted(v[2] for v in clones.values()) == [2, 2, 3, 3]  # K and V reshapes of both layers
    onnx.checker.check_model(c.model, full_check=True)
    assert_same_outputs(m, c.model, encoder_feeds(m))


def test_nothing_dead_leaves_the_model_as_is():
    m = ffn_model()
    c = _compact(m)
    assert c.removed == {} and not c.stats["compacted"]
    assert {k: v.shape for k, v in _inits(c.model).items()} == {k: v.shape for k, v in _inits(m).items()}
    assert_same_outputs(m, c.model, {"x": np.ones((1, 2, 16), np.float32)})


def test_backward_from_classifier_through_flatten_pool_relu_bn_to_conv_filters():
    """Gemm columns pruned -> GAP/Flatten channels unused -> Relu/BN/Conv filters dead -> all shrink."""
    rng = np.random.default_rng(3)
    wc = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    bn = {k: (rng.random(6) + 0.5).astype(np.float32) for k in ("s", "v")}
    bn.update({k: rng.standard_normal(6).astype(np.float32) for k in ("b", "m")})
    wf = rng.standard_normal((5, 6)).astype(np.float32)  # torch Linear [out, in], transB=1
    dead = [0, 2, 3]
    wf[:, dead] = 0
    m = make_model([helper.make_node("Conv", ["x", "wc", "bc"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
                    helper.make_node("Relu", ["n"], ["r"]),
                    helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                    helper.make_node("GlobalAveragePool", ["p"], ["g"]),
                    helper.make_node("Flatten", ["g"], ["f"]),
                    helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)],
                   [vi("x", ["n", 3, 8, 8])], [vi("y", ["n", 5])],
                   [init("wc", wc), init("bc", rng.standard_normal(6).astype(np.float32)),
                    init("wf", wf), init("bf", np.zeros(5, np.float32))] + [init(k, v) for k, v in bn.items()])
    c = _compact(m)
    assert c.removed["wc"] == {0: dead} and c.removed["wf"] == {1: dead} and c.removed["v"] == {0: dead}
    onnx.checker.check_model(c.model, full_check=True)
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)})


def test_gemm_mlp_weight_only_channel_pruning_folds_into_next_gemm_bias():
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((10, 6)).astype(np.float32)  # [N, K], transB=1
    b1 = (rng.standard_normal(10) + 0.5).astype(np.float32)  # biases kept: channels are constants
    w2 = rng.standard_normal((4, 10)).astype(np.float32)
    dead = [1, 5, 6]
    w1[dead] = 0
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, alpha=0.5, beta=2.0),
                    helper.make_node("Tanh", ["h"], ["r"]),
                    helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, alpha=0.7, beta=1.5)],
                   [vi("x", ["n", 6])], [vi("y", ["n", 4])],
                   [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", rng.standard_normal(4).astype(np.float32))])
    c = _compact(m)
    assert c.folded == {"b1": dead}
    assert c.removed == {"w1": {0: dead}, "b1": {0: dead}, "w2": {1: dead}}
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((3, 6)).astype(np.float32)})


def test_models_mlp_gemm_builder_compacts():
    mlp = __import__("pytest").importorskip("models.mlp")
    m = mlp.build_mlp([16, 32, 24, 8], activation="relu", use_gemm=True)
    for t in m.graph.initializer:
        if t.name == "fc1.weight":  # [N, K]: prune output channels (rows), weight only
            a = numpy_helper.to_array(t).copy()
            a[::3] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    c = _compact(m)
    assert c.removed.get("fc2.weight") == {1: list(range(0, 32, 3))}
    onnx.checker.check_model(c.model, full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    assert_same_outputs(m, c.model, {m.graph.input[0].name: x})


def test_align_keeps_a_multiple_of_8_channels():
    """align=8 (CUDA): of 32 channels with 13 dead, 24 stay (5 dead ones kept as zeros), outputs unchanged;
    a group whose size is not a multiple of 8 is compacted fully."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)  # MatMul [K, N]
    w2 = rng.standard_normal((32, 4)).astype(np.float32)
    dead = [0, 1, 2, 5, 7, 9, 11, 13, 17, 19, 23, 29, 31]
    w1[:, dead] = 0
    m = make_model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                    helper.make_node("MatMul", ["r", "w2"], ["y"])],
                   [vi("x", ["n", 16])], [vi("y", ["n", 4])], [init("w1", w1), init("w2", w2)])
    full = compact(propagate(annotated_from(m)))
    assert _inits(full.model)["w1"].shape == (16, 19)
    c = compact(propagate(annotated_from(m)), align=8)
    assert _inits(c.model)["w1"].shape == (16, 24) and _inits(c.model)["w2"].shape == (24, 4)
    assert c.removed["w1"] == {1: dead[:8]}
    assert_same_outputs(m, c.model, {"x": rng.standard_normal((3, 16)).astype(np.float32)})
    w1b = np.delete(w1, [30], axis=1)  # 31 channels, 13 dead: not a multiple of 8, so no alignment
    mb = make_model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                     helper.make_node("MatMul", ["r", "w2"], ["y"])],
                    [vi("x", ["n", 16])], [vi("y", ["n", 4])], [init("w1", w1b), init("w2", np.delete(w2, [30], 0))])
    assert _inits(compact(propagate(annotated_from(mb)), align=8).model)["w1"].shape == (16, 18)
