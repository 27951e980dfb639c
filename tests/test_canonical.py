"""Constant vectors, one per reader (transform/canonical.py)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sparsify_onnx.graph import index_model
from sparsify_onnx.transform.canonical import own_vectors


def _model():
    """Two LayerNorms sharing scale "ones" (as torch.onnx's dynamo exporter writes equal values), and two bias Adds
    reading "zeros", the second through an Identity (as its tracer does)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.ones(8, np.float32), "ones"),
             numpy_helper.from_array(np.linspace(-1, 1, 8).astype(np.float32), "zeros"),
             numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W")]
    nodes = [helper.make_node("LayerNormalization", ["X", "ones"], ["a"]),
             helper.make_node("MatMul", ["a", "W"], ["b"]),
             helper.make_node("Add", ["b", "zeros"], ["c"]),
             helper.make_node("Identity", ["zeros"], ["zeros_again"]),
             helper.make_node("Add", ["c", "zeros_again"], ["d"]),
             helper.make_node("LayerNormalization", ["d", "ones"], ["Y"])]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "g", [vi("X", TensorProto.FLOAT, ["n", 8])], [vi("Y", TensorProto.FLOAT, ["n", 8])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, X):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": X})[0]


def test_each_reader_gets_its_own_vector_and_the_outputs_stay():
    lo = index_model(_model())
    new = own_vectors(lo)
    g = new.model.graph
    assert "Identity" not in [n.op_type for n in g.node]
    vectors = [i for n in g.node for i in n.input if i in new.initializer_names and new.weights[i].ndim == 1]
    assert len(vectors) == len(set(vectors)) == 4
    for v in vectors:
        assert np.array_equal(new.weights[v], lo.weights[v.rsplit(".", 1)[0]])
        assert new.shapes[v] == (8,) and new.dtypes[v] == TensorProto.FLOAT
    assert lo.model.graph.node[3].op_type == "Identity"  # (the source model is not changed)
    X = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(new.model, X), _run(lo.model, X))


def test_a_model_without_shared_vectors_is_returned_as_it_is():
    lo = index_model(_model())
    once = own_vectors(lo)
    assert own_vectors(once) is once
