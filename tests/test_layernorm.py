"""LayerNorms in a graph (transform/layernorm.py): the op and torch's opset < 17 decomposition, and what is not one."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.bert import BertConfig, build_bert
from sparsify_onnx.graph import index_model
from sparsify_onnx.transform.layernorm import find_layernorms

from helpers import decomposed_layernorm

H = 16


def _decomposed(*, dtype=TensorProto.FLOAT, casts=False, square="Pow", bias=True, axes=(-1,), extra_reader=None,
                eps_input=False):
    """X [b, s, H] -> the decomposition -> Y; `extra_reader`: an intermediate also read by a second output."""
    np_t = helper.tensor_dtype_to_np_dtype(dtype)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(H).astype(np_t), "scale"),
             numpy_helper.from_array(rng.standard_normal(H).astype(np_t), "bias")]
    nodes, scalars = decomposed_layernorm(bias="bias" if bias else None, axis=axes[0], casts_to=dtype if casts else None,
                                          square=square, eps_input="eps_in" if eps_input else None)
    outs = [helper.make_tensor_value_info("Y", dtype, ["b", "s", H])]
    if extra_reader:
        outs.append(helper.make_tensor_value_info(f"ln/{extra_reader}", TensorProto.UNDEFINED, None))
    ins = [helper.make_tensor_value_info("X", dtype, ["b", "s", H])]
    if eps_input:
        ins.append(helper.make_tensor_value_info("eps_in", TensorProto.FLOAT, []))
    g = helper.make_graph(nodes, "ln", ins, outs, inits + scalars)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("dtype,casts", [(TensorProto.FLOAT, False), (TensorProto.FLOAT16, True)])
@pytest.mark.parametrize("square", ["Pow", "Mul"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_decomposition_torch_writes_is_one_layernorm(dtype, casts, square, bias):
    lo = index_model(_decomposed(dtype=dtype, casts=casts, square=square, bias=bias))
    (y, m), = find_layernorms(lo).items()
    assert y == "Y" and m.x == "X" and m.scale == "scale" and m.bias == ("bias" if bias else None)
    assert m.epsilon == pytest.approx(1e-5)
    assert len(m.nodes) == (9 if bias else 8) + (2 if casts else 0)
    assert {id(n) for n in m.nodes} <= {id(n) for n in lo.graph.node}


@pytest.mark.parametrize("why,kw", [
    ("an intermediate is also a graph output", dict(extra_reader="var")),
    ("the mean is over another axis", dict(axes=(1,))),
    ("eps is not a constant", dict(eps_input=True)),
])
def test_what_is_not_a_layernorm(why, kw):
    assert find_layernorms(index_model(_decomposed(**kw))) == {}, why


def test_a_layernormalization_op_with_a_constant_1d_scale():
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", H])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["b", H])
    s = numpy_helper.from_array(np.ones(H, np.float32), "s")
    for inputs, found in ((["X", "s"], True), (["X", "X"], False)):
        g = helper.make_graph([helper.make_node("LayerNormalization", inputs, ["Y"], epsilon=1e-3)], "g", [x], [y], [s])
        ms = find_layernorms(index_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
        assert (list(ms) == ["Y"] and ms["Y"].epsilon == pytest.approx(1e-3) and ms["Y"].bias is None) == found


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_every_layernorm_of_a_bert_exported_before_opset_17(dtype):
    model = build_bert(BertConfig.preset("tiny", dtype=dtype), seed=1, dynamic_shapes=True, layer_norm="decomposed")
    onnx.checker.check_model(model)
    ms = find_layernorms(index_model(model))
    assert len(ms) == 5 and "last_hidden_state" in ms
    assert {m.scale for m in ms.values()} == {"embeddings.LayerNorm.weight"} | {
        f"encoder.layer.{i}.{w}.LayerNorm.weight" for i in range(2) for w in ("attention.output", "output")}
