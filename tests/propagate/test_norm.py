"""Rules in propagate/rules/norm.py."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, init, make_model, vi
from sparsify_onnx.propagate import propagate


def test_batchnorm_zero_channel_only_when_shift_is_zero():
    w = np.ones((4, 2, 1, 1), np.float32)
    w[[1, 2]] = 0
    bn = dict(s=np.ones(4, np.float32), b=np.array([0, 0, 0.5, 0], np.float32),
              m=np.array([0, 0, 0, 0.1], np.float32), v=np.ones(4, np.float32))
    m = make_model([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])],
                   [vi("x", [1, 2, 3, 3])], [vi("y", [1, 4, 3, 3])], [init("w", w)] + [init(k, v) for k, v in bn.items()])
    p = propagate(annotated_from(m))
    # channel 1: zero in, beta = mean = 0 -> zero; channel 2: beta 0.5 -> not zero
    assert np.broadcast_to(p.tesas["y"].nonzero, (1, 4, 3, 3))[0, :, 0, 0].tolist() == [True, False, True, True]


def test_softmax_row_used_when_any_output_used():
    w = np.ones((5, 3), np.float32)
    w[:, 1] = 0
    m = make_model([helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("MatMul", ["s", "w"], ["y"])],
                   [vi("x", ["n", 4, 5])], [vi("y", ["n", 4, 3])], [init("w", w)])
    p = propagate(annotated_from(m))
    assert np.broadcast_to(p.tesas["x"].used, (1, 4, 5)).all()
    assert np.broadcast_to(p.tesas["s"].nonzero, (1, 4, 5)).all()


def test_layernorm_multi_axis_sound():
    check_single_op(helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=1),
                    {"x": (2, 3, 4), "s": (3, 4), "b": (3, 4)}, rng=np.random.default_rng(9))


def test_instance_norm_sound():
    check_single_op(helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"]),
                    {"x": (2, 3, 4, 4), "s": (3,), "b": (3,)}, rng=np.random.default_rng(10))
