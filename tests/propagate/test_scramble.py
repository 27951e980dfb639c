"""propagate/scramble.py: rules inferred by tensor scrambling for ops without one."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, init, make_model, vi
from sparsify_onnx.propagate import propagate
from sparsify_onnx.tesa import TeSA


def _model():
    # ReverseSequence has no rule: zeros move with the reversed time axis
    w = np.ones((3, 4), np.float32)
    w[:, 1] = 0
    return make_model([helper.make_node("MatMul", ["x", "w"], ["h"]),
                       helper.make_node("ReverseSequence", ["h", "lens"], ["r"], batch_axis=0, time_axis=1),
                       helper.make_node("Relu", ["r"], ["y"])],
                      [vi("x", [2, 3])], [vi("y", [2, 4])], [init("w", w), init("lens", np.array([4, 4], np.int64))])


def test_without_infer_rules_op_is_unknown_and_conservative():
    p = propagate(annotated_from(_model()))
    assert p.unknown_ops == ["ReverseSequence:r (ReverseSequence)"]
    assert np.broadcast_to(p.tesas["r"].nonzero, (2, 4)).all()


def test_infer_rules_finds_moved_zeros():
    p = propagate(annotated_from(_model()), infer_rules=True)
    # ReverseSequence with full lengths reverses each row: h[:, 1] == 0 -> r[:, 2] == 0
    assert np.broadcast_to(p.tesas["r"].nonzero, (2, 4))[:, 2].tolist() == [False, False]
    assert any("scrambling" in line for line in p.log)


def test_infer_rules_backward_unused():
    m = make_model([helper.make_node("ReverseSequence", ["x", "lens"], ["r"], batch_axis=0, time_axis=1),
                    helper.make_node("Mul", ["r", "m"], ["y"])],
                   [vi("x", [2, 3])], [vi("y", [2, 3])],
                   [init("lens", np.array([3, 3], np.int64)), init("m", np.array([1, 1, 0], np.float32))])
    p = propagate(annotated_from(m), infer_rules=True)
    # y ignores r[:, 2] -> x[:, 0] (reversed) is unused
    assert np.broadcast_to(p.tesas["x"].used, (2, 3)).tolist() == [[False, True, True]] * 2


def test_scrambling_skips_what_it_cannot_run():
    m = make_model([helper.make_node("Hardmax", ["x"], ["y"])], [vi("x", None)], [vi("y", None)], [], check=False)
    seed = {"x": TeSA("x", (), np.ones((), bool), np.ones((), bool))}
    p = propagate(annotated_from(m, seed), infer_rules=True)
    assert any("scrambling skipped" in line for line in p.log)
