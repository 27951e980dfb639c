"""Helpers for propagation / compaction tests: tiny models built with onnx.helper."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sparsify_onnx.annotate import Annotated
from sparsify_onnx.graph import index_model
from sparsify_onnx.spec import Spec

OPSET = 17


def annotated_from(model: onnx.ModelProto, seeds=None) -> Annotated:
    lo = index_model(model)
    return Annotated(source=lo, loaded=lo, spec=Spec(), selections={}, tesas=dict(seeds or {}))


def make_model(nodes, inputs, outputs, inits=(), opset=OPSET, check=True) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def run(model: onnx.ModelProto, feeds: dict, threads: int = 1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def ffn_model(hidden=16, inter=32, prune_cols=(), prune_bias=True, seed=0, ln=False, batch="batch",
              seq="seq"):
    """x[b, s, H] -> MatMul W1 -> +b1 -> Gelu(erf form) -> MatMul W2 -> +b2 -> (+x -> LayerNorm)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, inter)) / np.sqrt(hidden)).astype(np.float32)
    b1 = (rng.standard_normal(inter) * 0.1 + 0.05).astype(np.float32)
    w2 = (rng.standard_normal((inter, hidden)) / np.sqrt(inter)).astype(np.float32)
    b2 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    cols = list(prune_cols)
    w1[:, cols] = 0
    if prune_bias:
        b1[cols] = 0
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"], name="ffn1/MatMul"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="ffn1/Add"),
        helper.make_node("Div", ["h1", "sqrt2"], ["g0"], name="gelu/Div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="gelu/Erf"),
        helper.make_node("Add", ["g1", "one"], ["g2"], name="gelu/Add"),
        helper.make_node("Mul", ["h1", "g2"], ["g3"], name="gelu/Mul"),
        helper.make_node("Mul", ["g3", "half"], ["g4"], name="gelu/Mul_1"),
        helper.make_node("MatMul", ["g4", "W2"], ["o0"], name="ffn2/MatMul"),
        helper.make_node("Add", ["o0", "b2"], ["o1"], name="ffn2/Add"),
    ]
    inits = [init("W1", w1), init("b1", b1), init("W2", w2), init("b2", b2),
             init("sqrt2", np.array(1.4142135, np.float32)), init("one", np.array(1.0, np.float32)),
             init("half", np.array(0.5, np.float32))]
    out = "o1"
    if ln:
        nodes += [helper.make_node("Add", ["o1", "x"], ["r"], name="res/Add"),
                  helper.make_node("LayerNormalization", ["r", "ln_s", "ln_b"], ["y"], name="ln", axis=-1,
                                   epsilon=1e-5)]
        inits += [init("ln_s", np.ones(hidden, np.float32)), init("ln_b", np.zeros(hidden, np.float32))]
        out = "y"
    return make_model(nodes, [vi("x", [batch, seq, hidden])], [vi(out, [batch, seq, hidden])], inits)
