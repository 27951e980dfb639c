"""Rules in propagate/rules/conv.py."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, check_single_op, init, make_model, vi
from sparsify_onnx.propagate import propagate


def test_conv_zero_filters_zero_channels_and_unused_input_channels():
    w = np.ones((4, 3, 3, 3), np.float32)
    w[1] = 0  # output channel 1 zero
    w[:, 2] = 0  # input channel 2 meets only zeros
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [vi("x", ["n", 3, 8, 8])],
                   [vi("y", ["n", 4, 8, 8])], [init("w", w)])
    p = propagate(annotated_from(m))
    y = p.tesas["y"]
    assert np.broadcast_to(y.nonzero, y.mask_shape)[0, :, 0, 0].tolist() == [True, False, True, True]
    x = p.tesas["x"]
    assert np.broadcast_to(x.used, x.mask_shape)[0, :, 0, 0].tolist() == [True, True, False]


def test_grouped_conv_channels_stay_in_their_group():
    w = np.ones((4, 1, 3, 3), np.float32)
    w[2] = 0
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=4)], [vi("x", [1, 4, 5, 5])],
                   [vi("y", [1, 4, 3, 3])], [init("w", w)])
    p = propagate(annotated_from(m))
    assert np.broadcast_to(p.tesas["x"].used, (1, 4, 5, 5))[0, :, 0, 0].tolist() == [True, True, False, True]


def test_conv_strided_dilated_sound():
    check_single_op(helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 1], dilations=[1, 2],
                                     pads=[0, 1, 1, 0]),
                    {"x": (2, 3, 7, 7), "w": (4, 3, 2, 3), "b": (4,)}, rng=np.random.default_rng(7))


def test_pool_per_channel():
    m = make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [vi("x", [1, 3, 4, 4])],
                   [vi("y", [1, 3, 1, 1])], [])
    from sparsify_onnx.tesa import TeSA
    nz = np.ones((1, 3, 4, 4), bool)
    nz[:, 1] = False
    p = propagate(annotated_from(m, {"x": TeSA("x", (1, 3, 4, 4), nz, np.ones((1, 3, 4, 4), bool))}))
    assert np.broadcast_to(p.tesas["y"].nonzero, (1, 3, 1, 1)).reshape(-1).tolist() == [True, False, True]
