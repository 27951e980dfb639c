"""LayerNorm + Gather fusion (transform/lngather.py) and the op layer's ai.sparsify::LayerNormGather on the CPU."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsify_onnx.codegen import generate
from sparsify_onnx.custom_ops.build import build_library
from sparsify_onnx.custom_ops.cache import CompileCache
from sparsify_onnx.graph import index_model
from sparsify_onnx.transform.lngather import fuse_layernorm_gather

from helpers import decomposed_layernorm


def _model(H=40, *, bias=True, index=None, eps=1e-3, extra_consumer=False, seed=0, ln_axis=-1, decomposed=False):
    """X -> LayerNormalization (last axis) -> Gather(axis -1, index) -> Y (+ the LayerNorm's output as a second
    graph output when extra_consumer); `decomposed`: the LayerNorm as torch's opset < 17 export writes it."""
    rng = np.random.default_rng(seed)
    index = rng.permutation(H) if index is None else np.asarray(index)
    inits = [numpy_helper.from_array((1 + 0.3 * rng.standard_normal(H)).astype(np.float32), "scale"),
             numpy_helper.from_array(index.astype(np.int64), "index")]
    ln_in = ["X", "scale"]
    if bias:
        inits.append(numpy_helper.from_array((0.2 * rng.standard_normal(H)).astype(np.float32), "bias"))
        ln_in.append("bias")
    nodes = [helper.make_node("LayerNormalization", ln_in, ["N"], name="ln", axis=ln_axis, epsilon=eps)]
    if decomposed:
        nodes, scalars = decomposed_layernorm("X", "N", bias="bias" if bias else None, eps=eps, axis=ln_axis)
        inits += scalars
    nodes.append(helper.make_node("Gather", ["N", "index"], ["Y"], name="ln/Order", axis=-1))
    outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["b", "s", H])]
    if extra_consumer:
        outs.append(helper.make_tensor_value_info("N", TensorProto.FLOAT, ["b", "s", H]))
    g = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", "s", H])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """A library (any kernel: the op layer is in every one), CPU only."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_build import small_kernel
    spec, p, _ = small_kernel()
    out = tmp_path_factory.mktemp("lib")
    return build_library(generate([(spec, p)]), out, cache=CompileCache(tmp_path_factory.mktemp("cache")),
                         cuda=False).path


def _session(model, lib=None):
    so = ort.SessionOptions()
    if lib is not None:
        so.register_custom_ops_library(str(lib))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("H,bias", [(40, True), (7, False), (768, True)])
def test_the_fused_op_gives_layernorm_then_gather(lib, H, bias):
    m = _model(H, bias=bias)
    fused, names = fuse_layernorm_gather(m)
    assert names == ["ln/Order"]
    ops = [(n.domain, n.op_type) for n in fused.graph.node]
    assert ops == [("ai.sparsify", "LayerNormGather")]
    assert any(o.domain == "ai.sparsify" for o in fused.opset_import)
    X = np.random.default_rng(1).standard_normal((3, 5, H)).astype(np.float32) * 3 + 1
    want = _session(m).run(None, {"X": X})[0]
    got = _session(fused, lib).run(None, {"X": X})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias,ln_axis", [(True, -1), (False, 2)])
def test_the_decomposition_torch_exports_is_fused_too(lib, bias, ln_axis):
    """ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul scale (, Add bias) + Gather: one op."""
    m = _model(24, bias=bias, decomposed=True, ln_axis=ln_axis)
    fused, names = fuse_layernorm_gather(m, known=index_model(m))
    assert names == ["ln/Order"] and [n.op_type for n in fused.graph.node] == ["LayerNormGather"]
    assert {t.name for t in fused.graph.initializer} == {"scale", "index"} | ({"bias"} if bias else {"ln/zero_bias"})
    X = np.random.default_rng(3).standard_normal((2, 3, 24)).astype(np.float32) * 2 - 1
    np.testing.assert_allclose(_session(fused, lib).run(None, {"X": X})[0], _session(m).run(None, {"X": X})[0],
                               rtol=1e-5, atol=1e-5)


def test_a_last_axis_spelled_from_the_front_is_fused_too(lib):
    m = _model(16, ln_axis=2)  # (X is [b, s, 16])
    fused, names = fuse_layernorm_gather(m)
    assert names == ["ln/Order"]
    X = np.random.default_rng(2).standard_normal((2, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(_session(fused, lib).run(None, {"X": X})[0], _session(m).run(None, {"X": X})[0],
                               rtol=1e-5, atol=1e-5)


def test_only_a_lone_gather_of_a_permutation_is_fused():
    assert fuse_layernorm_gather(_model(extra_consumer=True))[1] == []  # the LayerNorm's output is also read
    assert fuse_layernorm_gather(_model(index=[0, 0, 1, 2]))[1] == []  # not a permutation of the axis
    assert fuse_layernorm_gather(_model(), gathers={"another"})[1] == []  # not one of the named
    m = _model()
    assert fuse_layernorm_gather(m)[0] is not m and fuse_layernorm_gather(m, gathers=set())[0] is m


def test_an_index_out_of_range_is_an_error(lib):
    m = _model(8)
    fused, _ = fuse_layernorm_gather(m)
    for t in fused.graph.initializer:
        if t.name == "index":
            t.CopyFrom(numpy_helper.from_array(np.array([0, 1, 2, 3, 4, 5, 6, 9], np.int64), "index"))
    with pytest.raises(Exception, match=r"LayerNormGather: index\[7\] = 9 is outside 0..7"):
        _session(fused, lib).run(None, {"X": np.ones((1, 2, 8), np.float32)})


@pytest.mark.parametrize("traced", [False, True])
def test_transform_fuses_the_gathers_of_the_reordered_layernorms(traced):
    """A CUDA plan of BERT (fp16, every linear 90% unstructured): the K permutation gives every LayerNorm a Gather,
    and the plan's model runs each pair as one LayerNormGather (recorded in Plan.permutation). `traced`: the graph
    torch.onnx's tracer writes before opset 17 (decomposed LayerNorms, reshape targets from Shape nodes), planned
    with concrete input dims as convert does."""
    from models.bert import BertConfig, build_bert
    from sparsify_onnx.annotate import annotate
    from sparsify_onnx.graph import index_model
    from sparsify_onnx.propagate import propagate
    from sparsify_onnx.spec import parse_spec
    from sparsify_onnx.transform import transform
    from sparsify_onnx.transform.replace import TransformOptions
    spec = parse_spec('version: 1\nrules:\n  - select: {node: "/encoder/layer.*/MatMul"}\n'
                      '    pattern: unstructured\n    sparsity: 0.9\n')
    an = annotate(index_model(build_bert(BertConfig.preset("tiny", dtype="fp16", layers=1), seed=1,
                                         dynamic_shapes=traced, layer_norm="decomposed" if traced else "op")), spec)
    dims = {"input_ids": (2, 16), "attention_mask": (2, 16)} if traced else None
    plan = transform(propagate(an, enabled=True), TransformOptions(devices=("cuda",), policy="always",
                                                                   input_dims=dims))
    assert len(plan.permutation["groups"]) == 4  # (Q, K and V; FFN1; FFN2; the attention output)
    fused = [n for n in plan.model.graph.node if n.op_type == "LayerNormGather"]
    assert len(fused) == 3 and all(n.domain == "ai.sparsify" for n in fused)
    assert not [n for n in plan.model.graph.node if n.op_type in ("LayerNormalization", "ReduceMean", "Sqrt") or
                n.name.endswith("/Order")]
    assert [r["fused"] for r in plan.permutation["gathers"]] == [True] * 3
    onnx.checker.check_model(plan.model)
