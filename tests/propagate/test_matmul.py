"""Rules in propagate/rules/matmul.py."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, init, make_model, vi
from sparsify_onnx.propagate import propagate


def _full(p, n, which):
    t = p.tesas[n]
    return np.broadcast_to(getattr(t, which), t.mask_shape)


def test_zero_weight_rows_make_input_columns_unused_and_zero_columns_zero_outputs():
    w = np.ones((4, 3), np.float32)
    w[1] = 0  # row k=1 dead -> x[..., 1] unused
    w[:, 2] = 0  # column 2 dead -> y[..., 2] zero
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", ["b", "s", 4])],
                   [vi("y", ["b", "s", 3])], [init("w", w)])
    p = propagate(annotated_from(m))
    assert _full(p, "x", "used").reshape(-1).tolist() == [True, False, True, True]
    assert _full(p, "y", "nonzero").reshape(-1).tolist() == [True, True, False]
    assert p.tesas["x"].used.shape == (1, 1, 4)  # symbolic dims stay size 1


def test_unused_outputs_make_weight_columns_unused():
    w = np.ones((4, 3), np.float32)
    w2 = np.ones((3, 2), np.float32)
    w2[0] = 0
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
                   [vi("x", ["n", 4])], [vi("y", ["n", 2])], [init("w", w), init("w2", w2)])
    p = propagate(annotated_from(m))
    assert (~_full(p, "w", "used")[:, 0]).all() and _full(p, "w", "used")[:, 1:].all()


def test_gemm_alpha_zero_output_is_bias_only():
    m = make_model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.0)], [vi("a", [2, 3]), vi("b", [3, 4])],
                   [vi("y", [2, 4])], [init("c", np.array([0, 1, 0, 1], np.float32))])
    p = propagate(annotated_from(m))
    assert _full(p, "y", "nonzero")[0].tolist() == [False, True, False, True]
    assert not _full(p, "a", "used").any()


def test_batched_attention_matmul_sound():
    check_single_op(helper.make_node("MatMul", ["p", "v"], ["y"]), {"p": (2, 3, 5, 5), "v": (2, 3, 5, 4)},
                    rng=np.random.default_rng(3))


def test_gemm_trans_sound():
    check_single_op(helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, beta=0.5),
                    {"a": (4, 3), "b": (5, 4), "c": (3, 1)}, rng=np.random.default_rng(4))
