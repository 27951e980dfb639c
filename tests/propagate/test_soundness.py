"""Soundness of every registered rule against onnxruntime.

For each rule: random masked inputs through the single op; every element marked zero
must be zero, and perturbing elements marked unused must change no used output.
Plus hypothesis property tests on random masks for the main rules.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

from proputil import check_single_op
from sparsify_onnx.propagate.registry import registered_ops

F, B, I64, I32, U8 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.INT64, TensorProto.INT32, TensorProto.UINT8
S = (3, 4, 5)


def N(op, ins, outs=("y",), domain="", **kw):
    return helper.make_node(op, list(ins), list(outs), domain=domain, **kw)


def unary(op, opset=17, domain="", **kw):
    return dict(node=N(op, ["x"], domain=domain, **kw), data_inputs={"x": S}, opset=opset,
                out_shapes={"y": S})


def binary(op, dtype=F, out_dtype=F, opset=17, **kw):
    return dict(node=N(op, ["a", "b"], **kw), data_inputs={"a": S, "b": (4, 1)}, opset=opset,
                in_dtypes={"a": dtype, "b": dtype}, out_dtype=out_dtype)


CASES: dict[str, list[dict]] = {}


def case(op, **kw):
    CASES.setdefault(op, []).append(kw)


for op in ["Relu", "Erf", "Tanh", "Neg", "Abs", "Sqrt", "Identity", "Sin", "Sinh", "Asin", "Asinh", "Atan",
           "Atanh", "Tan", "Sign", "Floor", "Ceil", "Round", "Softsign", "Selu", "Elu", "ThresholdedRelu",
           "Sigmoid", "Exp", "Cos", "Cosh", "Log", "Reciprocal", "HardSigmoid", "Softplus", "Acos", "Acosh"]:
    case(op, **unary(op))
case("LeakyRelu", **unary("LeakyRelu", alpha=0.2))
case("Celu", **unary("Celu", opset=12))
case("HardSwish", **unary("HardSwish", opset=14))
case("Mish", **unary("Mish", opset=18))
case("Gelu", **unary("Gelu", opset=20))
case("Cast", **unary("Cast", to=TensorProto.FLOAT))
case("Dropout", node=N("Dropout", ["x"], ["y", "m"]), data_inputs={"x": S}, out_dtype={"y": F, "m": B})
case("Dropout", node=N("Dropout", ["x"]), data_inputs={"x": S})
case("Not", node=N("Not", ["x"]), data_inputs={"x": S}, in_dtypes={"x": B}, out_dtype=B)
case("IsNaN", node=N("IsNaN", ["x"]), data_inputs={"x": S}, out_dtype=B)
case("IsInf", node=N("IsInf", ["x"]), data_inputs={"x": S}, out_dtype=B)
case("Clip", node=N("Clip", ["x", "lo", "hi"]), data_inputs={"x": S},
     const_inputs={"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)})
case("Clip", node=N("Clip", ["x", "lo", "hi"]), data_inputs={"x": S},
     const_inputs={"lo": np.array(0.1, np.float32), "hi": np.array(0.7, np.float32)})
case("Clip", node=N("Clip", ["x", "lo", "hi"]), data_inputs={"x": S, "lo": (), "hi": ()})
case("PRelu", node=N("PRelu", ["x", "s"]), data_inputs={"x": S, "s": (5,)})
case("CastLike", node=N("CastLike", ["x", "t"]), data_inputs={"x": S, "t": (1,)})
for op in ["Add", "Sub", "Max", "Min", "Mean", "Mul", "Div", "Pow"]:
    case(op, **binary(op))
case("Add", node=N("Add", ["a", "b"]), data_inputs={"a": (2, 3, 4), "b": (2, 1, 4)})
case("Sum", node=N("Sum", ["a", "b", "c"]), data_inputs={"a": S, "b": (5,), "c": (4, 1)})
case("Pow", node=N("Pow", ["a", "e"]), data_inputs={"a": S}, const_inputs={"e": np.array(2.0, np.float32)})
case("Pow", node=N("Pow", ["a", "e"]), data_inputs={"a": S}, const_inputs={"e": np.array(0.0, np.float32)})
for op in ["Or", "Xor", "And"]:
    case(op, **binary(op, B, B))
for op in ["BitwiseOr", "BitwiseXor", "BitwiseAnd"]:
    case(op, **binary(op, I32, I32, opset=18))
for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
    case(op, **binary(op, F, B))
case("Mod", **binary("Mod", F, F, fmod=1))
case("BitShift", **binary("BitShift", U8, U8, direction="LEFT"))
case("Where", node=N("Where", ["c", "a", "b"]), data_inputs={"c": S, "a": S, "b": (5,)}, in_dtypes={"c": B})
case("Where", node=N("Where", ["c", "a", "b"]), data_inputs={"a": S, "b": (5,)},
     const_inputs={"c": np.random.default_rng(1).random(S) < 0.5})
case("Constant", node=N("Constant", [], value=helper.make_tensor("v", F, [3], [0.0, 1.0, 0.0])),
     data_inputs={})
case("ConstantOfShape", node=N("ConstantOfShape", ["s"]), data_inputs={},
     const_inputs={"s": np.array([2, 3], np.int64)})
# matmul family
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (6, 7), "b": (7, 5)})
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (2, 6, 7), "b": (7, 5)})
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (2, 3, 6, 4), "b": (2, 3, 4, 5)})
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (2, 1, 6, 4), "b": (3, 4, 5)})
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (7,), "b": (2, 7, 5)})
case("MatMul", node=N("MatMul", ["a", "b"]), data_inputs={"a": (2, 6, 7), "b": (7,)})
for ta in (0, 1):
    for tb in (0, 1):
        case("Gemm", node=N("Gemm", ["a", "b", "c"], transA=ta, transB=tb, alpha=0.5, beta=2.0),
             data_inputs={"a": (7, 6) if ta else (6, 7), "b": (5, 7) if tb else (7, 5), "c": (5,)})
case("Gemm", node=N("Gemm", ["a", "b"]), data_inputs={"a": (6, 7), "b": (7, 5)})
case("Gemm", node=N("Gemm", ["a", "b", "c"], beta=0.0), data_inputs={"a": (6, 7), "b": (7, 5), "c": (6, 1)})
# conv family
case("Conv", node=N("Conv", ["x", "w", "b"], pads=[1, 1, 1, 1]), data_inputs={"x": (2, 4, 6, 6), "w": (6, 4, 3, 3),
                                                                            "b": (6,)})
case("Conv", node=N("Conv", ["x", "w"], group=2, strides=[2, 2], dilations=[2, 1]),
     data_inputs={"x": (1, 4, 9, 9), "w": (6, 2, 3, 3)})
case("Conv", node=N("Conv", ["x", "w", "b"], group=4, pads=[1, 1, 1, 1]),
     data_inputs={"x": (1, 4, 5, 5), "w": (4, 1, 3, 3), "b": (4,)})
case("Conv", node=N("Conv", ["x", "w"]), data_inputs={"x": (2, 3, 8), "w": (5, 3, 3)})
case("MaxPool", node=N("MaxPool", ["x"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]), data_inputs={"x": (2, 4, 5, 5)})
case("MaxPool", node=N("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2]), data_inputs={"x": (2, 4, 5, 5)},
     out_dtype={"y": F, "idx": I64})
case("AveragePool", node=N("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2]),
     data_inputs={"x": (2, 4, 7, 7)})
case("LpPool", node=N("LpPool", ["x"], kernel_shape=[2, 2]), data_inputs={"x": (2, 4, 5, 5)})
for op in ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]:
    case(op, node=N(op, ["x"]), data_inputs={"x": (2, 4, 5, 5)})
# norms
case("LayerNormalization", node=N("LayerNormalization", ["x", "s", "b"], axis=-1), data_inputs={"x": S, "s": (5,),
                                                                                              "b": (5,)})
case("LayerNormalization", node=N("LayerNormalization", ["x", "s"], axis=1), data_inputs={"x": S, "s": (4, 5)})
_bn = {"s": np.array([1.0, 0.0, 2.0, 1.0], np.float32), "b": np.array([0.0, 0.0, 0.5, 0.0], np.float32),
       "m": np.array([0.0, 0.3, 0.0, 0.2], np.float32), "v": np.array([1.0, 2.0, 1.0, 0.5], np.float32)}
case("BatchNormalization", node=N("BatchNormalization", ["x", "s", "b", "m", "v"]), data_inputs={"x": (2, 4, 3, 3)},
     const_inputs=_bn)
case("BatchNormalization", node=N("BatchNormalization", ["x", "s", "b", "m", "v"]),
     data_inputs={"x": (2, 4, 3, 3), "s": (4,), "b": (4,)}, const_inputs={"m": _bn["m"], "v": _bn["v"]})
case("InstanceNormalization", node=N("InstanceNormalization", ["x", "s", "b"]),
     data_inputs={"x": (2, 4, 3, 3), "s": (4,), "b": (4,)})
for op in ["Softmax", "LogSoftmax"]:
    case(op, node=N(op, ["x"], axis=1), data_inputs={"x": S})
    case(op, node=N(op, ["x"], axis=1), data_inputs={"x": S}, opset=11)
# data movement
case("Transpose", node=N("Transpose", ["x"], perm=[2, 0, 1]), data_inputs={"x": S})
case("Shape", node=N("Shape", ["x"]), data_inputs={"x": S}, out_dtype=I64)
case("Size", node=N("Size", ["x"]), data_inputs={"x": S}, out_dtype=I64)
case("Reshape", node=N("Reshape", ["x", "s"]), data_inputs={"x": (2, 12, 5)},
     const_inputs={"s": np.array([0, 3, 4, -1], np.int64)})
case("Reshape", node=N("Reshape", ["x", "s"]), data_inputs={"x": (2, 3, 4, 5)},
     const_inputs={"s": np.array([2, -1, 20], np.int64)})
case("Reshape", node=N("Reshape", ["x", "s"]), data_inputs={"x": (6, 4)},
     const_inputs={"s": np.array([4, 6], np.int64)})
case("Flatten", node=N("Flatten", ["x"], axis=2), data_inputs={"x": (2, 3, 4, 5)})
case("Squeeze", node=N("Squeeze", ["x", "ax"]), data_inputs={"x": (3, 1, 5)}, const_inputs={"ax": np.array([1])})
case("Squeeze", node=N("Squeeze", ["x"], axes=[1]), data_inputs={"x": (3, 1, 5)}, opset=11)
case("Unsqueeze", node=N("Unsqueeze", ["x", "ax"]), data_inputs={"x": (3, 5)},
     const_inputs={"ax": np.array([0, 2])})
case("Concat", node=N("Concat", ["a", "b"], axis=1), data_inputs={"a": (3, 2, 5), "b": (3, 4, 5)})
case("Split", node=N("Split", ["x", "sp"], ["y0", "y1"], axis=1), data_inputs={"x": (3, 6, 2)},
     const_inputs={"sp": np.array([2, 4], np.int64)})
case("Split", node=N("Split", ["x"], ["y0", "y1", "y2"], axis=0), data_inputs={"x": (6, 4)})
case("Slice", node=N("Slice", ["x", "st", "en", "ax", "sp"]), data_inputs={"x": (6, 7, 3)},
     const_inputs={"st": np.array([1, -1]), "en": np.array([5, -8]), "ax": np.array([0, 1]),
                   "sp": np.array([2, -2])})
case("Slice", node=N("Slice", ["x", "st", "en"]), data_inputs={"x": (6, 7)},
     const_inputs={"st": np.array([2]), "en": np.array([100])})
case("Gather", node=N("Gather", ["x", "i"], axis=1), data_inputs={"x": (3, 6, 2)},
     const_inputs={"i": np.array([[0, 5], [5, -1]], np.int64)})
case("Gather", node=N("Gather", ["x", "i"], axis=0), data_inputs={"x": (6, 4), "i": (2, 3)},
     in_dtypes={"i": I64})
case("Expand", node=N("Expand", ["x", "s"]), data_inputs={"x": (4, 1)}, const_inputs={"s": np.array([2, 4, 3])})
case("Tile", node=N("Tile", ["x", "r"]), data_inputs={"x": (2, 3)}, const_inputs={"r": np.array([2, 3])})
for mode in ("constant", "reflect", "edge"):
    case("Pad", node=N("Pad", ["x", "p"], mode=mode), data_inputs={"x": (4, 5)},
         const_inputs={"p": np.array([1, 2, 2, 1])})
case("Pad", node=N("Pad", ["x", "p", "v"]), data_inputs={"x": (4, 5)},
     const_inputs={"p": np.array([1, -1, 0, 2]), "v": np.array(0.5, np.float32)})
for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare",
           "ReduceProd", "ReduceLogSum", "ReduceLogSumExp"]:
    case(op, node=N(op, ["x", "ax"], keepdims=0), data_inputs={"x": S}, const_inputs={"ax": np.array([1])},
         opset=18)
    case(op, node=N(op, ["x"], keepdims=1), data_inputs={"x": S}, opset=18)
case("ReduceSum", node=N("ReduceSum", ["x"], axes=[0, 2]), data_inputs={"x": S}, opset=11)
case("ReduceMean", node=N("ReduceMean", ["x"], axes=[-1], keepdims=0), data_inputs={"x": S}, opset=13)
for op in ["ArgMax", "ArgMin"]:
    case(op, node=N(op, ["x"], axis=1, keepdims=0), data_inputs={"x": S}, out_dtype=I64)
case("Trilu", node=N("Trilu", ["x", "k"], upper=0), data_inputs={"x": (2, 4, 5)}, const_inputs={"k": np.array(1)})
case("Trilu", node=N("Trilu", ["x"]), data_inputs={"x": (4, 3)})
case("CumSum", node=N("CumSum", ["x", "ax"], reverse=1), data_inputs={"x": S}, const_inputs={"ax": np.array(1)})
case("Range", node=N("Range", ["a", "b", "c"]), data_inputs={"a": (), "b": ()},
     const_inputs={"c": np.array(0.5, np.float32)}, out_shapes={"y": None})
case("NonZero", node=N("NonZero", ["x"]), data_inputs={"x": (3, 4)}, out_dtype=I64, out_shapes={"y": None})
case("EyeLike", node=N("EyeLike", ["x"], k=1), data_inputs={"x": (3, 4)})
for op in ["Gelu", "FastGelu", "QuickGelu"]:
    case("com.microsoft/" + op, node=N(op, ["x"], domain="com.microsoft"), data_inputs={"x": S},
         out_shapes={"y": S}, domain_opsets={"com.microsoft": 1})


def _key(domain, op):
    return op if domain in ("", "ai.onnx") else f"{domain}/{op}"


def test_every_registered_rule_has_a_soundness_case():
    missing = sorted({_key(d, o) for d, o, _ in registered_ops()} - set(CASES))
    assert not missing, f"no soundness case for {missing}"


PARAMS = [pytest.param(op, k, kw, id=f"{op}-{k}") for op, kws in sorted(CASES.items()) for k, kw in enumerate(kws)]


@pytest.mark.parametrize("op,k,kw", PARAMS)
def test_rule_sound_against_onnxruntime(op, k, kw):
    for seed in range(3):
        check_single_op(rng=np.random.default_rng(1000 * k + seed), **kw)


# ---- hypothesis property tests on random masks ----------------------------------------------
MAIN = ["MatMul", "Gemm", "Add", "Mul", "Conv", "Reshape", "Transpose", "Softmax", "LayerNormalization",
        "BatchNormalization", "Slice", "Gather", "Concat", "ReduceSum", "Where", "Pad"]


@pytest.mark.parametrize("op", MAIN)
@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1))
def test_property_random_masks(op, seed):
    rng = np.random.default_rng(seed)
    kws = CASES[op]
    kw = kws[int(rng.integers(len(kws)))]
    check_single_op(rng=rng, draws=2, **kw)


# ---- compaction: the compacted model computes what the pruned dense model computes -------------
@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1))
def test_property_compaction_matches_pruned_model(seed):
    from proputil import (annotated_from, assert_same_outputs, conv_model, encoder_feeds, encoder_model,
                          ffn_model)
    from sparsify_onnx.propagate import propagate
    from sparsify_onnx.transform.compact import compact
    import onnx

    rng = np.random.default_rng(seed)
    kind = ["ffn", "conv", "encoder"][seed % 3]
    if kind == "ffn":
        cols = sorted(rng.choice(32, size=int(rng.integers(0, 32)), replace=False).tolist())
        m = ffn_model(prune_cols=cols, prune_bias=bool(rng.random() < 0.5), ln=bool(rng.random() < 0.5),
                      seed=seed % 7)
        feeds = {"x": rng.standard_normal((2, 3, 16)).astype(np.float32)}
    elif kind == "conv":
        cols = sorted(rng.choice(8, size=int(rng.integers(0, 8)), replace=False).tolist())
        m = conv_model(prune=cols, bn_shift_zero=bool(rng.random() < 0.7), seed=seed % 7)
        feeds = {"x": rng.standard_normal((2, 4, 6, 6)).astype(np.float32)}
    else:
        heads = sorted(rng.choice(4, size=int(rng.integers(0, 4)), replace=False).tolist())
        cols = sorted(rng.choice(64, size=int(rng.integers(0, 64)), replace=False).tolist())
        m = encoder_model(layers=2, hidden=32, heads=4, inter=64, seed=seed % 7,
                          prune={"v_heads": {0: heads}, "ffn1_cols": {1: cols},
                                 "prune_bias": bool(rng.random() < 0.5)})
        feeds = encoder_feeds(m, seed=seed % 5)
    c = compact(propagate(annotated_from(m)))
    onnx.checker.check_model(c.model, full_check=True)
    assert_same_outputs(m, c.model, feeds, rtol=1e-5, atol=1e-5)
