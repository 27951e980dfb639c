"""propagate/registry.py: lookup by (domain, op_type), opset awareness, user rules."""
from __future__ import annotations

import numpy as np
from onnx import helper

from proputil import annotated_from, make_model, vi
from sparsify_onnx.propagate import propagate, register_rule, rule
from sparsify_onnx.propagate.registry import lookup, registered_ops, unregister_rule

ISSUE_OPS = ["MatMul", "Gemm", "Conv", "Add", "Sub", "Mul", "Div", "Relu", "Gelu", "Erf", "Tanh", "Sigmoid",
             "Softmax", "LayerNormalization", "BatchNormalization", "Transpose", "Reshape", "Flatten", "Squeeze",
             "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Where", "Cast", "Identity", "Dropout", "MaxPool",
             "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Expand", "Pad", "Clip",
             "LeakyRelu", "Shape"]


def test_every_op_of_the_issue_has_a_rule():
    assert not [op for op in ISSUE_OPS if lookup(op, "", 17) is None]


def test_default_domain_aliases():
    assert lookup("Relu", "ai.onnx", 17) is lookup("Relu", "", 17)
    assert lookup("Gelu", "com.microsoft", 1) is not None


def test_opset_aware_lookup_and_user_rule():
    calls = []

    def old(ctx):
        calls.append(("old", ctx.opset))

    def new(ctx):
        calls.append(("new", ctx.opset))
        ctx.narrow_output(0, nonzero=np.zeros((), bool))

    register_rule("MyOp", old, domain="my.domain", since_opset=1)
    register_rule("MyOp", new, domain="my.domain", since_opset=3)
    try:
        assert lookup("MyOp", "my.domain", 2).fn is old
        assert lookup("MyOp", "my.domain", 5).fn is new
        assert ("my.domain", "MyOp", 3) in registered_ops()
        g = helper.make_graph([helper.make_node("MyOp", ["x"], ["y"], domain="my.domain")], "g",
                              [vi("x", [2])], [vi("y", [2])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 4)])
        p = propagate(annotated_from(m))
        assert calls and calls[0] == ("new", 4)
        assert not np.asarray(p.tesas["y"].nonzero).any()
        assert p.unknown_ops == []
    finally:
        unregister_rule("MyOp", domain="my.domain")
    assert lookup("MyOp", "my.domain", 5) is None


def test_stacked_decorators_register_every_op():
    @rule("OpA", "OpB", domain="t.d")
    @rule("OpC", domain="t.e", since_opset=2)
    def r(ctx):
        pass
    try:
        assert lookup("OpA", "t.d", 1).fn is r and lookup("OpB", "t.d", 1).fn is r
        assert lookup("OpC", "t.e", 1) is None and lookup("OpC", "t.e", 2).fn is r
    finally:
        for op, d in (("OpA", "t.d"), ("OpB", "t.d"), ("OpC", "t.e")):
            unregister_rule(op, domain=d)


def test_unknown_op_is_conservative_and_named():
    m = make_model([helper.make_node("MatMul", ["x", "x2"], ["h"]), helper.make_node("Hardmax", ["h"], ["y"])],
                   [vi("x", [2, 3]), vi("x2", [3, 2])], [vi("y", [2, 2])], [])
    p = propagate(annotated_from(m))
    assert p.unknown_ops == ["Hardmax:y (Hardmax)"]
    assert np.asarray(p.tesas["h"].used).all() and np.asarray(p.tesas["y"].nonzero).all()
