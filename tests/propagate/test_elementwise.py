"""Rules in propagate/rules/elementwise.py."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, init, make_model, vi
from sparsify_onnx.propagate import propagate
from sparsify_onnx.tesa import TeSA


def _prop(nodes, inputs, outputs, inits=(), seeds=None, opset=17):
    return propagate(annotated_from(make_model(nodes, inputs, outputs, inits, opset=opset), seeds))


def _seed(name, shape, nonzero=None, used=None):
    ms = tuple(d if isinstance(d, int) else 1 for d in shape)
    return TeSA(name=name, shape=tuple(shape), nonzero=np.ones(ms, bool) if nonzero is None else nonzero,
                used=np.ones(ms, bool) if used is None else used)


def full(p, n):
    t = p.tesas[n]
    return np.broadcast_to(t.nonzero, t.mask_shape), np.broadcast_to(t.used, t.mask_shape)


def test_relu_keeps_zeros_sigmoid_does_not():
    nz = np.array([[True, False, True]])
    p = _prop([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"])],
              [vi("x", [1, 3])], [vi("r", [1, 3]), vi("s", [1, 3])], seeds={"x": _seed("x", (1, 3), nz)})
    assert full(p, "r")[0].tolist() == nz.tolist()
    assert full(p, "s")[0].all()


def test_add_with_bias_zero_only_where_both_zero():
    x_nz = np.array([[True, False, False, True]])
    b = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    p = _prop([helper.make_node("Add", ["x", "b"], ["y"])], [vi("x", ["n", 4])], [vi("y", ["n", 4])],
              [init("b", b)], seeds={"x": _seed("x", ("n", 4), x_nz)})
    assert full(p, "y")[0].tolist() == [[True, True, False, True]]


def test_mul_by_zero_makes_other_operand_unused():
    m = np.array([1.0, 0.0, 2.0], np.float32)
    p = _prop([helper.make_node("Mul", ["x", "m"], ["y"])], [vi("x", ["n", 3])], [vi("y", ["n", 3])],
              [init("m", m)])
    assert full(p, "x")[1].tolist() == [[True, False, True]]
    assert full(p, "y")[0].tolist() == [[True, False, True]]


def test_multiple_consumers_union_of_uses():
    # x feeds Mul by [1, 0] and Relu: used where either consumer uses it
    p = _prop([helper.make_node("Mul", ["x", "m"], ["a"]), helper.make_node("Relu", ["x"], ["b"])],
              [vi("x", ["n", 2])], [vi("a", ["n", 2]), vi("b", ["n", 2])], [init("m", np.array([1, 0], np.float32))])
    assert full(p, "x")[1].all()
    p2 = _prop([helper.make_node("Mul", ["x", "m"], ["a"]), helper.make_node("Mul", ["x", "m2"], ["b"])],
               [vi("x", ["n", 2])], [vi("a", ["n", 2]), vi("b", ["n", 2])],
               [init("m", np.array([1, 0], np.float32)), init("m2", np.array([0, 0], np.float32))])
    assert full(p2, "x")[1].tolist() == [[True, False]]


def test_div_divisor_never_narrowed_by_numerator_zeros():
    p = _prop([helper.make_node("Div", ["a", "b"], ["y"])], [vi("a", [1, 3]), vi("b", [1, 3])], [vi("y", [1, 3])],
              seeds={"a": _seed("a", (1, 3), np.array([[True, False, True]]))})
    assert full(p, "b")[1].all()
    assert full(p, "y")[0].tolist() == [[True, False, True]]


def test_clip_with_positive_min_creates_values():
    p = _prop([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [vi("x", [1, 2])], [vi("y", [1, 2])],
              [init("lo", np.array(0.5, np.float32)), init("hi", np.array(1.0, np.float32))],
              seeds={"x": _seed("x", (1, 2), np.array([[True, False]]))})
    assert full(p, "y")[0].all()


def test_where_with_constant_condition_selects_masks():
    c = np.array([[True, False, True]])
    p = _prop([helper.make_node("Where", ["c", "a", "b"], ["y"])], [vi("a", [1, 3]), vi("b", [1, 3])],
              [vi("y", [1, 3])], [init("c", c)],
              seeds={"a": _seed("a", (1, 3), np.array([[False, True, True]])),
                     "b": _seed("b", (1, 3), np.array([[True, False, True]]))})
    assert full(p, "y")[0].tolist() == [[False, False, True]]
    assert full(p, "a")[1].tolist() == [[True, False, True]]  # a's middle is never selected
    assert full(p, "b")[1].tolist() == [[False, True, False]]


def test_erf_gelu_chain_sound():
    check_single_op(helper.make_node("Erf", ["x"], ["y"]), {"x": (4, 6)}, rng=np.random.default_rng(5))
