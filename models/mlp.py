"""A multi-layer perceptron written with onnx.helper, named like a torch export.

    python -m models.mlp --out mlp.onnx [--sizes 512,2048,2048,512] [--gemm] [--activation relu]

Input ``input`` ``[batch, sizes[0]]`` float32, output ``output`` ``[batch, sizes[-1]]``.
Layer i (1-based) is ``fc{i}``:

- default: ``/fc{i}/MatMul`` with weight ``fc{i}.weight`` stored **[K, N] = [in, out]** (the
  torch `nn.Linear.weight` transposed), then ``/fc{i}/Add`` with ``fc{i}.bias``;
- ``use_gemm=True``: one ``/fc{i}/Gemm`` with ``transB=1`` and the weight stored as torch keeps
  it, **[N, K] = [out, in]** (what torch emits for a 2-D Linear).

Between layers: ``/act{i}/Relu`` (activation "relu"), the erf GELU decomposition under
``/act{i}/`` ("gelu"), or nothing ("none"). No activation after the last layer.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
ACTIVATIONS = ("relu", "gelu", "none")


def _error(message: str) -> Exception:
    try:
        from sparsify_onnx.errors import SparsifyError
    except Exception:
        return ValueError(message)
    return SparsifyError(message)


def mlp_weights(sizes, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights, ``fc{i}.weight`` in [K, N] layout ~ N(0, 1/K), biases ~ N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        out[f"fc{i}.weight"] = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32)
        out[f"fc{i}.bias"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
    return out


def build_mlp(sizes=(512, 2048, 2048, 512), activation: str = "relu", use_gemm: bool = False, seed: int = 0,
              weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """MatMul+Add(+activation) chain, or Gemm(transB=1)(+activation) chain with `use_gemm`.

    `weights` (optional) are in [K, N] layout for both variants (transposed for Gemm here).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) <= 0:
        raise _error(f"sizes must list at least two positive sizes, got {sizes}")
    if activation not in ACTIVATIONS:
        raise _error(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    w = weights if weights is not None else mlp_weights(sizes, seed)
    nodes, inits = [], []
    x = "input"
    n_layers = len(sizes) - 1

    def node(op, inputs, name, output=None, **attrs):
        out = output or f"{name}_output_0"
        nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def const(scope, value):  # torch-style names: Constant, Constant_1, ...
        i = sum(n.name.startswith(f"{scope}/Constant") for n in nodes)
        return node("Constant", [], f"{scope}/Constant" + (f"_{i}" if i else ""),
                    value=numpy_helper.from_array(np.array(value, np.float32)))

    for i in range(1, n_layers + 1):
        W, B = w[f"fc{i}.weight"], w[f"fc{i}.bias"]
        k, n = sizes[i - 1], sizes[i]
        if tuple(W.shape) != (k, n) or tuple(B.shape) != (n,):
            raise _error(f"fc{i}: weight {list(W.shape)} / bias {list(B.shape)}, expected [{k}, {n}] / [{n}]")
        last = i == n_layers
        out_name = "output" if last else None
        if use_gemm:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(W.T.astype(np.float32)), f"fc{i}.weight"))
            inits.append(numpy_helper.from_array(B.astype(np.float32), f"fc{i}.bias"))
            y = node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], f"/fc{i}/Gemm", output=out_name,
                     alpha=1.0, beta=1.0, transB=1)
        else:
            inits.append(numpy_helper.from_array(W.astype(np.float32), f"fc{i}.weight"))
            inits.append(numpy_helper.from_array(B.astype(np.float32), f"fc{i}.bias"))
            y = node("MatMul", [x, f"fc{i}.weight"], f"/fc{i}/MatMul")
            y = node("Add", [y, f"fc{i}.bias"], f"/fc{i}/Add", output=out_name)
        if not last:
            a = f"/act{i}"
            if activation == "relu":
                y = node("Relu", [y], f"{a}/Relu")
            elif activation == "gelu":
                g = node("Div", [y, const(a, math.sqrt(2.0))], f"{a}/Div")
                g = node("Erf", [g], f"{a}/Erf")
                g = node("Add", [g, const(a, 1.0)], f"{a}/Add")
                g = node("Mul", [y, g], f"{a}/Mul")
                y = node("Mul", [g, const(a, 0.5)], f"{a}/Mul_1")
        x = y
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparsify-onnx models.mlp")
    model.ir_version = IR_VERSION
    return model


def mlp_reference(weights: dict[str, np.ndarray], x: np.ndarray, activation: str = "relu") -> np.ndarray:
    """The same math in float64 numpy (weights in [K, N] layout)."""
    y = np.asarray(x, np.float64)
    n_layers = sum(1 for k in weights if k.endswith(".weight"))
    for i in range(1, n_layers + 1):
        y = y @ np.asarray(weights[f"fc{i}.weight"], np.float64) + np.asarray(weights[f"fc{i}.bias"], np.float64)
        if i < n_layers:
            if activation == "relu":
                y = np.maximum(y, 0.0)
            elif activation == "gelu":
                y = 0.5 * y * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(y / math.sqrt(2.0)))
    return y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.mlp", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="512,2048,2048,512", help="comma-separated layer widths")
    ap.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    ap.add_argument("--gemm", action="store_true", help="Gemm(transB=1) instead of MatMul+Add")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"error: --sizes must be comma-separated integers, got {a.sizes!r}", file=sys.stderr)
        return 1
    try:
        model = build_mlp(sizes, a.activation, a.gemm, a.seed)
    except Exception as e:
        if type(e).__name__ in ("SparsifyError", "ValueError"):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    onnx.checker.check_model(model)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out))
    print(f"wrote {out}: MLP {'-'.join(map(str, sizes))}, {a.activation}, "
          f"{'Gemm(transB=1), weights [N, K]' if a.gemm else 'MatMul+Add, weights [K, N]'}, seed {a.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
