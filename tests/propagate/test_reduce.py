"""Rules in propagate/rules/reduce.py."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, init, make_model, vi
from sparsify_onnx.propagate import propagate
from sparsify_onnx.tesa import TeSA


def test_reduce_mean_zero_where_all_reduced_are_zero():
    nz = np.array([[True, False], [False, False], [True, True]])[None]  # [1, 3, 2]
    m = make_model([helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], [vi("x", [1, 3, 2])],
                   [vi("y", [1, 2])], [init("ax", np.array([1], np.int64))], opset=18)
    p = propagate(annotated_from(m, {"x": TeSA("x", (1, 3, 2), nz, np.ones((1, 3, 2), bool))}))
    assert np.broadcast_to(p.tesas["y"].nonzero, (1, 2)).tolist() == [[True, True]]
    nz2 = nz.copy()
    nz2[:, :, 1] = False
    p2 = propagate(annotated_from(m, {"x": TeSA("x", (1, 3, 2), nz2, np.ones((1, 3, 2), bool))}))
    assert np.broadcast_to(p2.tesas["y"].nonzero, (1, 2)).tolist() == [[True, False]]


def test_reduce_prod_zero_if_any_zero_sound():
    check_single_op(helper.make_node("ReduceProd", ["x", "ax"], ["y"]), {"x": (3, 4)},
                    const_inputs={"ax": np.array([0], np.int64)}, opset=18, rng=np.random.default_rng(2))


def test_reduce_sum_old_opset_attribute_axes_sound():
    check_single_op(helper.make_node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0), {"x": (3, 4, 2)}, opset=11,
                    rng=np.random.default_rng(3))
