"""Rules in propagate/rules/shape.py (and the symbolic shape folding they rely on)."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, encoder_model, init, make_model, vi
from sparsify_onnx.propagate import propagate
from sparsify_onnx.propagate.symbolic import Mono, reshape_groups
from sparsify_onnx.tesa import TeSA


def test_reshape_groups_with_symbols():
    b, s = Mono.of("b"), Mono.of("s")
    g = reshape_groups([b, s, Mono(768)], [b, s, Mono(12), Mono(64)])
    assert g == [([0], [0]), ([1], [1]), ([2], [2, 3])]
    assert reshape_groups([b, s, Mono(768)], [b * s, Mono(768)]) == [([0, 1], [0]), ([2], [1])]


def test_reshape_into_heads_moves_the_mask():
    nz = np.ones((1, 1, 8), bool)
    nz[..., 4:6] = False
    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", ["b", "t", 8])],
                   [vi("y", ["b", "t", 2, 4])], [init("s", np.array([0, 0, 2, 4], np.int64))])
    p = propagate(annotated_from(m, {"x": TeSA("x", ("b", "t", 8), nz, np.ones((1, 1, 8), bool))}))
    y = np.broadcast_to(p.tesas["y"].nonzero, (1, 1, 2, 4))
    assert y[0, 0].tolist() == [[True] * 4, [False, False, True, True]]


def test_reshape_target_from_shape_gather_concat_chain_is_folded():
    m = encoder_model(layers=1, hidden=16, heads=2, inter=32, prune={"v_heads": {0: [1]}})
    p = propagate(annotated_from(m))
    q = p.tesas["encoder.layer.0.attention.self.query.weight"]
    assert not np.broadcast_to(q.used, q.mask_shape)[:, 8:].any()  # through the Q reshape (chain target)


def test_merging_a_symbolic_axis_is_conservative():
    nz = np.array([[True, False]])
    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", ["n", 2])], [vi("y", [-1])],
                   [init("s", np.array([-1], np.int64))], check=False)
    p = propagate(annotated_from(m, {"x": TeSA("x", ("n", 2), nz, np.ones((1, 2), bool))}))
    assert np.asarray(p.tesas["y"].nonzero).all()


def test_shape_reads_no_values():
    m = make_model([helper.make_node("Shape", ["x"], ["y"])], [vi("x", ["n", 3])], [vi("y", [2], 7)], [])
    p = propagate(annotated_from(m))
    assert not np.asarray(p.tesas["x"].used).any()


def test_transpose_and_slice_sound():
    check_single_op(helper.make_node("Transpose", ["x"], ["y"], perm=[1, 2, 0]), {"x": (2, 3, 4)},
                    rng=np.random.default_rng(11))
    check_single_op(helper.make_node("Slice", ["x", "a", "b", "c", "d"], ["y"]), {"x": (5, 6)},
                    const_inputs={"a": np.array([4]), "b": np.array([-100]), "c": np.array([0]),
                                  "d": np.array([-2])}, rng=np.random.default_rng(12))


def test_gather_constant_indices_backward():
    m = make_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [vi("x", ["n", 5])], [vi("y", ["n", 2])],
                   [init("i", np.array([4, 1], np.int64))])
    p = propagate(annotated_from(m))
    assert np.broadcast_to(p.tesas["x"].used, (1, 5)).tolist() == [[False, True, False, False, True]]
