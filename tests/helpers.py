"""Small ONNX models built in tests (the tree stays small: nothing large is committed)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_chain(sizes=(64, 96, 64), *, act="relu", seed=0, batch="batch", residual=False, gemm=False,
                 erf_gelu=False):
    """X[batch, sizes[0]] -> (MatMul|Gemm) + bias -> act -> ... ; names like a torch export. erf_gelu: True for
    GELU as torch's tracer writes it, (x * (1+erf(x/sqrt2))) * 0.5, "export" as torch.export does,
    x * (0.5 * (1+erf(x/sqrt2)))."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = (rng.standard_normal(n) * 0.1).astype(np.float32)
        pre = f"/layers.{i}"
        if gemm:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"layers.{i}.weight"))
            inits.append(numpy_helper.from_array(b, f"layers.{i}.bias"))
            nodes.append(helper.make_node("Gemm", [x, f"layers.{i}.weight", f"layers.{i}.bias"], [f"{pre}/y"],
                                          name=f"{pre}/Gemm", transB=1, alpha=0.5, beta=2.0))
            y = f"{pre}/y"
        else:
            inits.append(numpy_helper.from_array(w, f"layers.{i}.weight"))
            inits.append(numpy_helper.from_array(b, f"layers.{i}.bias"))
            nodes.append(helper.make_node("MatMul", [x, f"layers.{i}.weight"], [f"{pre}/mm"], name=f"{pre}/MatMul"))
            nodes.append(helper.make_node("Add", [f"{pre}/mm", f"layers.{i}.bias"], [f"{pre}/y"], name=f"{pre}/Add"))
            y = f"{pre}/y"
        last = i == len(sizes) - 2
        if not last:
            if erf_gelu:
                inits += [numpy_helper.from_array(np.array(1.4142135, np.float32), f"{pre}/sqrt2"),
                          numpy_helper.from_array(np.array(1.0, np.float32), f"{pre}/one"),
                          numpy_helper.from_array(np.array(0.5, np.float32), f"{pre}/half")]
                nodes += [helper.make_node("Div", [y, f"{pre}/sqrt2"], [f"{pre}/d"], name=f"{pre}/act/Div"),
                          helper.make_node("Erf", [f"{pre}/d"], [f"{pre}/e"], name=f"{pre}/act/Erf"),
                          helper.make_node("Add", [f"{pre}/e", f"{pre}/one"], [f"{pre}/e1"], name=f"{pre}/act/Add"),
                          helper.make_node("Mul", [y, f"{pre}/e1"], [f"{pre}/m"], name=f"{pre}/act/Mul"),
                          helper.make_node("Mul", [f"{pre}/m", f"{pre}/half"], [f"{pre}/a"], name=f"{pre}/act/Mul_1")]
                if erf_gelu == "export":
                    nodes[-2:] = [helper.make_node("Mul", [f"{pre}/half", f"{pre}/e1"], [f"{pre}/m"],
                                                   name=f"{pre}/act/Mul"),
                                  helper.make_node("Mul", [y, f"{pre}/m"], [f"{pre}/a"], name=f"{pre}/act/Mul_1")]
            elif act:
                nodes.append(helper.make_node({"relu": "Relu"}[act], [y], [f"{pre}/a"], name=f"{pre}/act/Relu"))
            else:
                nodes.append(helper.make_node("Identity", [y], [f"{pre}/a"], name=f"{pre}/Identity"))
            y = f"{pre}/a"
        if residual and k == n and i > 0:
            nodes.append(helper.make_node("Add", [y, x], [f"{pre}/res"], name=f"{pre}/residual/Add"))
            y = f"{pre}/res"
        x = y
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out/Identity"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def sparse_linear_model(spec, values: np.ndarray, elem_type=TensorProto.FLOAT):
    """One ai.sparsify SparseLinear node running kernel `spec` over the packed `values` (an initializer)."""
    g = helper.make_graph(
        [helper.make_node("SparseLinear", ["X", "v"], ["Y"], domain="ai.sparsify", kernel=spec.op_key())], "g",
        [helper.make_tensor_value_info("X", elem_type, ["M", spec.K])],
        [helper.make_tensor_value_info("Y", elem_type, ["M", spec.N])], [numpy_helper.from_array(values, "v")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sparsify", 1)],
                             ir_version=10)  # (onnxruntime 1.31 reads IR up to 13)


# every /layers.*/MatMul of linear_chain 80% sparse in 16x16 blocks (the key `sparsity` is on line 6)
BLOCK16_SPEC = """version: 1
rules:
  - select: {node: "/layers.*/MatMul"}
    pattern: block
    block: [16, 16]
    sparsity: 0.8
propagate: false
"""


def write_spec(path, text: str):
    path.write_text(text)
    return path


def decomposed_layernorm(x="X", y="Y", *, scale="scale", bias="bias", eps=1e-5, axis=-1, casts_to=None,
                         square="Pow", eps_input=None, name="ln"):
    """The nodes and scalar initializers of LayerNorm(x) -> y over `axis` as torch.onnx's tracer writes it before
    opset 17: ReduceMean, Sub, [Cast to float,] Pow 2 (or Mul(d, d)), ReduceMean, Add eps, Sqrt, Div,
    [Cast to `casts_to`,] Mul scale (scale first), Add bias (none when `bias` is None). The last node is `name`;
    `eps_input`: the eps Add reads this tensor instead of a constant."""
    n = helper.make_node
    nodes = [n("ReduceMean", [x], [f"{name}/mean"], axes=[axis]), n("Sub", [x, f"{name}/mean"], [f"{name}/d"])]
    d = f"{name}/d"
    if casts_to is not None:
        nodes.append(n("Cast", [d], [f"{name}/dc"], to=TensorProto.FLOAT))
        d = f"{name}/dc"
    nodes.append(n("Pow", [d, f"{name}/two"], [f"{name}/sq"]) if square == "Pow" else n("Mul", [d, d], [f"{name}/sq"]))
    nodes += [n("ReduceMean", [f"{name}/sq"], [f"{name}/var"], axes=[axis]),
              n("Add", [f"{name}/var", eps_input or f"{name}/eps"], [f"{name}/ve"]),
              n("Sqrt", [f"{name}/ve"], [f"{name}/std"]), n("Div", [d, f"{name}/std"], [f"{name}/n"])]
    last = f"{name}/n"
    if casts_to is not None:
        nodes.append(n("Cast", [last], [f"{name}/nc"], to=casts_to))
        last = f"{name}/nc"
    nodes.append(n("Mul", [scale, last], [y if bias is None else f"{name}/m"]))
    if bias is not None:
        nodes.append(n("Add", [f"{name}/m", bias], [y]))
    nodes[-1].name = name
    inits = [numpy_helper.from_array(np.array(v, np.float32), f"{name}/{k}") for k, v in (("two", 2.0), ("eps", eps))]
    return nodes, inits
