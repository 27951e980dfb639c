"""annotate / prune_model / inspect on small ONNX models built with onnx.helper."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

from sparsify_onnx.annotate import (Annotated, annotate, format_model_table, format_spec_table, inspect_model,
                                    inspect_spec, prune_model)
from sparsify_onnx.annotate.sparsifiers import fits, prune
from sparsify_onnx.errors import SparsifyError
from sparsify_onnx.graph import index_model, load_model, save_model
from sparsify_onnx.pattern import Pattern
from sparsify_onnx.spec import parse_spec

OPSET = [oh.make_opsetid("", 17)]


def rand(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.05, x).astype(np.float32)


def mlp_model(weights: dict | None = None, constant_w2: bool = False) -> onnx.ModelProto:
    """x[B,64] -> MatMul fc1.weight[64,128] -> Add fc1.bias -> Relu -> MatMul fc2.weight[128,32] -> Add -> y."""
    w = {"fc1.weight": rand((64, 128), 1), "fc1.bias": rand((128,), 2), "fc2.weight": rand((128, 32), 3),
         "fc2.bias": rand((32,), 4)}
    w.update(weights or {})
    nodes = [
        oh.make_node("MatMul", ["x", "fc1.weight"], ["h1"], name="/fc1/MatMul"),
        oh.make_node("Add", ["h1", "fc1.bias"], ["h2"], name="/fc1/Add"),
        oh.make_node("Relu", ["h2"], ["a1"], name="/act/Relu"),
        oh.make_node("MatMul", ["a1", "fc2.weight"], ["h3"], name="/fc2/MatMul"),
        oh.make_node("Add", ["h3", "fc2.bias"], ["y"], name="/fc2/Add"),
    ]
    inits = [nh.from_array(v, k) for k, v in w.items()]
    if constant_w2:
        inits = [i for i in inits if i.name != "fc2.weight"]
        nodes.insert(0, oh.make_node("Constant", [], ["fc2.weight"], name="/fc2/Constant",
                                     value=nh.from_array(w["fc2.weight"], "c")))
    g = oh.make_graph(nodes, "mlp", [oh.make_tensor_value_info("x", TP.FLOAT, ["B", 64])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, ["B", 32])], inits)
    m = oh.make_model(g, opset_imports=OPSET)
    onnx.checker.check_model(m)
    return m


def gemm_model() -> onnx.ModelProto:
    """x[B,64] -> Gemm(W1[32,64] stored [N,K], transB=1) -> Relu -> Gemm(W2[32,16], transB=0) -> y[B,16];
    plus a pooler Gemm that must be excluded."""
    inits = [nh.from_array(rand((32, 64), 11), "g1.weight"), nh.from_array(rand((32,), 12), "g1.bias"),
             nh.from_array(rand((32, 16), 13), "g2.weight"), nh.from_array(rand((16,), 14), "g2.bias"),
             nh.from_array(rand((16, 16), 15), "pooler.weight")]
    nodes = [
        oh.make_node("Gemm", ["x", "g1.weight", "g1.bias"], ["h"], name="/g1/Gemm", transB=1),
        oh.make_node("Relu", ["h"], ["a"], name="/g1/Relu"),
        oh.make_node("Gemm", ["a", "g2.weight", "g2.bias"], ["y0"], name="/g2/Gemm", alpha=0.5, beta=2.0),
        oh.make_node("Gemm", ["y0", "pooler.weight"], ["y"], name="/pooler/Gemm"),
    ]
    g = oh.make_graph(nodes, "gemm", [oh.make_tensor_value_info("x", TP.FLOAT, [4, 64])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [4, 16])], inits)
    m = oh.make_model(g, opset_imports=OPSET)
    onnx.checker.check_model(m)
    return m


def conv_model() -> onnx.ModelProto:
    inits = [nh.from_array(rand((16, 8, 3, 3), 21), "conv1.weight"), nh.from_array(rand((16,), 22), "conv1.bias"),
             nh.from_array(rand((8, 16, 1, 1), 23), "conv2.weight")]
    nodes = [
        oh.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c1"], ["r1"], name="/conv1/Relu"),
        oh.make_node("Conv", ["r1", "conv2.weight"], ["y"], name="/conv2/Conv"),
    ]
    g = oh.make_graph(nodes, "conv", [oh.make_tensor_value_info("x", TP.FLOAT, [2, 8, 10, 10])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [2, 8, 10, 10])], inits)
    m = oh.make_model(g, opset_imports=OPSET)
    onnx.checker.check_model(m)
    return m


def spec(text: str):
    return parse_spec("version: 1\nrules:\n" + text, path="spec.yaml")


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def weights_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return index_model(model, infer_shapes=False).weights


# ---------------------------------------------------------------------------- selection

def test_tensor_glob_and_later_rule_wins():
    lo = index_model(mlp_model())
    s = spec("""\
  - select: {tensor: "fc*.weight"}
    pattern: unstructured
    sparsity: 0.5
  - select: {tensor: fc2.weight}
    pattern: nm
    n: 2
    m: 4
    sparsity: 0.5
""")
    a = annotate(lo, s)
    assert isinstance(a, Annotated)
    assert set(a.selections) == {"fc1.weight", "fc2.weight"}
    assert a.selections["fc1.weight"].rule.index == 1
    assert a.selections["fc2.weight"].rule.index == 2
    assert a.selections["fc2.weight"].pattern == Pattern("nm", n=2, m=4)
    assert a.selections["fc2.weight"].consumers == [("/fc2/MatMul", 1)]
    assert a.rule_matches[1] == ["fc1.weight", "fc2.weight"]
    # fc2 is 2:4 along K (axis 0), which plain unstructured pruning would not give
    w2 = a.loaded.weights["fc2.weight"]
    assert fits(w2, Pattern("nm", n=2, m=4), 0) is None
    assert a.selections["fc2.weight"].reduction_axis == 0


def test_tensor_glob_does_not_match_biases_unless_named():
    lo = index_model(mlp_model())
    a = annotate(lo, spec("  - select: {tensor: 'fc1.*'}\n    pattern: unstructured\n    sparsity: 0.5\n"))
    assert set(a.selections) == {"fc1.weight", "fc1.bias"}


def test_node_glob_op_filter_and_default_input():
    lo = index_model(mlp_model())
    a = annotate(lo, spec("  - select: {node: '/fc*', op: MatMul}\n    pattern: block\n    block: [8, 8]\n"
                          "    sparsity: 0.5\n"))
    assert set(a.selections) == {"fc1.weight", "fc2.weight"}  # Add nodes filtered out by op
    a = annotate(lo, spec("  - select: {op: MatMul}\n    pattern: unstructured\n    sparsity: 0.5\n"))
    assert set(a.selections) == {"fc1.weight", "fc2.weight"}
    # an explicit input on a node without a default weight input
    a = annotate(lo, spec("  - select: {node: /fc1/Add, input: 1}\n    pattern: unstructured\n    sparsity: 0.5\n"))
    assert set(a.selections) == {"fc1.bias"}


def test_node_glob_without_weight_input_is_an_error():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {node: '/act/*'}\n    pattern: unstructured\n    sparsity: 0.5\n"))
    assert "selects nothing" in ei.value.message and "no default weight input" in ei.value.hint


def test_index_selector_only_on_weights_unless_dynamic():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {node: /fc2/MatMul, input: 0}\n    pattern: unstructured\n"))
    e = ei.value
    assert e.where == "spec.yaml:3 (rule 1)" and "selects nothing" in e.message
    assert "not a weight" in e.hint and "dynamic" in e.hint
    a = annotate(lo, spec("  - select: {node: /fc2/MatMul, input: 0}\n    dynamic: true\n"))
    sel = a.selections["a1"]
    assert sel.dynamic and sel.reduction_axis is None and not sel.pruned
    t = a.tesas["a1"]
    assert t.dynamic and t.nonzero.all() and t.used.all() and t.pattern.kind == "unstructured"
    assert t.mask_shape == (1, 128)  # batch dim is symbolic -> size 1


def test_tensor_glob_over_activations_needs_dynamic():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {tensor: a1}\n    pattern: unstructured\n"))
    assert "activations" in ei.value.hint and "dynamic" in ei.value.hint
    a = annotate(lo, spec("  - select: {tensor: a1}\n    dynamic: true\n"))
    assert a.tesas["a1"].dynamic


@pytest.mark.parametrize("sel,close", [
    ("{tensor: fc1.weigth}", "fc1.weight"),
    ("{tensor: 'fc3.*'}", "fc"),
    ("{node: /fc1/Matmul}", "/fc1/MatMul"),
    ("{node: '/fc3/*', op: MatMul}", "/fc"),
    ("{op: Matmul}", "MatMul"),
])
def test_rule_selecting_nothing_names_rule_and_close_names(sel, close):
    lo = index_model(mlp_model())
    s = spec(f"  - select: {{op: MatMul}}\n    pattern: dense\n  - select: {sel}\n    pattern: unstructured\n"
             "    sparsity: 0.5\n")
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, s)
    e = ei.value
    assert e.where == "spec.yaml:5 (rule 2)"
    assert "selects nothing" in e.message and "rule 2" in e.message
    assert close in e.hint


def test_exclude_node_and_tensor():
    lo = index_model(gemm_model())
    s = parse_spec("version: 1\nrules:\n  - select: {op: Gemm}\n    pattern: unstructured\n    sparsity: 0.5\n"
                   "exclude:\n  - {node: '*pooler*'}\n", path="spec.yaml")
    a = annotate(lo, s)
    assert set(a.selections) == {"g1.weight", "g2.weight"}
    assert a.excluded_nodes == {"/pooler/Gemm"}
    assert np.array_equal(a.loaded.weights["pooler.weight"], lo.weights["pooler.weight"])
    s = parse_spec("version: 1\nrules:\n  - select: {op: Gemm}\n    pattern: unstructured\n    sparsity: 0.5\n"
                   "exclude:\n  - {tensor: 'g2.*'}\n", path="spec.yaml")
    a = annotate(lo, s)
    assert set(a.selections) == {"g1.weight", "pooler.weight"}
    assert a.excluded_tensors == {"g2.weight"}


def test_exclude_removes_weight_selected_by_tensor_glob_through_excluded_node():
    lo = index_model(gemm_model())
    s = parse_spec("version: 1\nrules:\n  - select: {tensor: '*.weight'}\n    pattern: unstructured\n"
                   "    sparsity: 0.5\nexclude:\n  - {node: '*pooler*'}\n", path="spec.yaml")
    a = annotate(lo, s)
    assert set(a.selections) == {"g1.weight", "g2.weight"} and a.excluded_tensors == {"pooler.weight"}
    # an exclude with an input index removes only that input of the node
    s = parse_spec("version: 1\nrules:\n  - select: {tensor: 'g1.*'}\n    pattern: unstructured\n"
                   "    sparsity: 0.5\nexclude:\n  - {node: /g1/Gemm, input: 2}\n", path="spec.yaml")
    assert set(annotate(lo, s).selections) == {"g1.weight"}


def test_weight_shared_with_excluded_node_is_left_alone():
    m = mlp_model()
    m.graph.node.append(oh.make_node("MatMul", ["x", "fc1.weight"], ["z"], name="/head/MatMul"))
    m.graph.output.append(oh.make_tensor_value_info("z", TP.FLOAT, ["B", 128]))
    lo = index_model(m)
    s = parse_spec("version: 1\nrules:\n  - select: {node: '/fc*/MatMul'}\n    pattern: unstructured\n"
                   "    sparsity: 0.5\nexclude:\n  - {node: /head/MatMul}\n", path="spec.yaml")
    a = annotate(lo, s)
    assert set(a.selections) == {"fc2.weight"}
    assert np.array_equal(a.loaded.weights["fc1.weight"], lo.weights["fc1.weight"])


def test_exclude_matching_nothing_is_an_error():
    lo = index_model(gemm_model())
    s = parse_spec("version: 1\nrules:\n  - select: {op: Gemm}\n    pattern: unstructured\n    sparsity: 0.5\n"
                   "exclude:\n  - {node: '*poler*'}\n", path="spec.yaml")
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, s)
    assert ei.value.where == "spec.yaml:7 (exclude 1)" and "/pooler/Gemm" in ei.value.hint


# ---------------------------------------------------------------------------- existing zeros

def test_rule_without_sparsity_whose_zeros_do_not_fit():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {tensor: fc2.weight}\n    pattern: nm\n    n: 2\n    m: 4\n"))
    e = ei.value
    assert "fc2.weight" in e.message and "2of4" in e.message and e.where == "spec.yaml:3 (rule 1)"
    assert "sparsity:" in e.hint
    W = prune(rand((64, 128), 1), Pattern("unstructured"), 0.6)
    lo = index_model(mlp_model({"fc1.weight": W}))
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {tensor: fc1.weight}\n    pattern: block\n    block: [16, 16]\n"))
    assert "fc1.weight" in ei.value.message and "block16x16" in ei.value.message


def test_sparse_rule_without_sparsity_on_a_dense_weight_is_an_error():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {op: MatMul}\n    pattern: block\n    block: [16, 16]\n"))
    assert "fc1.weight" in ei.value.message and "no zeros" in ei.value.message
    assert "add `sparsity:`" in ei.value.hint
    a = annotate(lo, spec("  - select: {op: MatMul}\n    pattern: dense\n"))  # dense always fits
    assert all(not s.pruned and s.density_after == 1.0 for s in a.selections.values())


def test_rule_without_sparsity_keeps_zeros_that_fit():
    W = prune(rand((64, 128), 1), Pattern("block", block=(16, 16)), 0.75)
    lo = index_model(mlp_model({"fc1.weight": W}))
    a = annotate(lo, spec("  - select: {tensor: fc1.weight}\n    pattern: block\n    block: [16, 16]\n"))
    sel = a.selections["fc1.weight"]
    assert not sel.pruned and sel.density_before == sel.density_after == pytest.approx(0.25)
    assert np.array_equal(a.loaded.weights["fc1.weight"], W)
    assert np.array_equal(a.tesas["fc1.weight"].nonzero, W != 0)
    assert a.tesas["fc1.weight"].declared_density == pytest.approx(0.25)


# ---------------------------------------------------------------------------- pruned model

def test_pruned_mlp_runs_and_matches_numpy_and_source_untouched():
    m = mlp_model()
    before = m.SerializeToString()
    lo = index_model(m)
    s = spec("""\
  - select: {tensor: fc1.weight}
    pattern: block
    block: [16, 16]
    sparsity: 0.75
  - select: {node: /fc2/MatMul}
    pattern: tile
    granularity: 8
    sparsity: 0.5
    method: random
    seed: 3
""")
    a = annotate(lo, s)
    assert m.SerializeToString() == before  # source ModelProto not mutated
    assert a.source is lo and np.count_nonzero(lo.weights["fc1.weight"]) == lo.weights["fc1.weight"].size
    w = a.loaded.weights
    assert np.count_nonzero(w["fc1.weight"]) / w["fc1.weight"].size == pytest.approx(0.25)
    assert abs(np.count_nonzero(w["fc2.weight"]) / w["fc2.weight"].size - 0.5) <= 8 / w["fc2.weight"].size
    for name in ("fc1.weight", "fc2.weight"):
        t = a.tesas[name]
        assert t.nonzero.shape == w[name].shape and np.array_equal(t.nonzero, w[name] != 0)
        assert t.used.all() and not t.dynamic and t.declared_density == pytest.approx(1 - s.rules[
            a.selections[name].rule.index - 1].sparsity)
    pm = prune_model(lo, s)
    onnx.checker.check_model(pm)
    x = rand((5, 64), 99)
    (y,) = run(pm, {"x": x})
    W = weights_of(pm)
    ref = np.maximum(x @ W["fc1.weight"] + W["fc1.bias"], 0) @ W["fc2.weight"] + W["fc2.bias"]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(W["fc1.weight"], w["fc1.weight"])
    (y0,) = run(m, {"x": x})
    assert not np.allclose(y0, y)  # pruning changed the function


def test_random_method_is_deterministic():
    lo = index_model(mlp_model())
    s = spec("  - select: {op: MatMul}\n    pattern: unstructured\n    sparsity: 0.5\n    method: random\n")
    a, b = annotate(lo, s), annotate(lo, s)
    assert np.array_equal(a.loaded.weights["fc1.weight"], b.loaded.weights["fc1.weight"])
    s2 = spec("  - select: {op: MatMul}\n    pattern: unstructured\n    sparsity: 0.5\n    method: random\n"
              "    seed: 1\n")
    c = annotate(lo, s2)
    assert not np.array_equal(a.loaded.weights["fc1.weight"], c.loaded.weights["fc1.weight"])


def test_constant_weight_is_pruned_in_place_of_the_constant():
    m = mlp_model(constant_w2=True)
    lo = index_model(m)
    assert "fc2.weight" in lo.weights and "fc2.weight" not in lo.initializer_names
    s = spec("  - select: {node: /fc2/MatMul}\n    pattern: nm\n    n: 2\n    m: 4\n    sparsity: 0.5\n")
    pm = prune_model(lo, s)
    assert not any(i.name == "fc2.weight" for i in pm.graph.initializer)
    W = weights_of(pm)
    assert fits(W["fc2.weight"], Pattern("nm", n=2, m=4), 0) is None
    assert np.count_nonzero(W["fc2.weight"]) == W["fc2.weight"].size // 2
    x = rand((3, 64), 5)
    (y,) = run(pm, {"x": x})
    ref = np.maximum(x @ W["fc1.weight"] + W["fc1.bias"], 0) @ W["fc2.weight"] + W["fc2.bias"]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_gemm_transB_layout():
    lo = index_model(gemm_model())
    s = spec("  - select: {op: Gemm, input: 1}\n    pattern: nm\n    n: 2\n    m: 4\n    sparsity: 0.5\n")
    a = annotate(lo, s)
    assert a.selections["g1.weight"].reduction_axis == 1  # stored [N, K] with transB=1: K is axis 1
    assert a.selections["g2.weight"].reduction_axis == 0  # stored [K, N]
    W1 = a.loaded.weights["g1.weight"]  # [32, 64] = [N, K]
    assert ((W1.reshape(32, 16, 4) != 0).sum(-1) == 2).all()  # 2:4 along K for every output
    W2 = a.loaded.weights["g2.weight"]  # [32, 16] = [K, N]
    assert ((W2.reshape(8, 4, 16) != 0).sum(1) == 2).all()
    pm = a.loaded.model
    x = rand((4, 64), 8)
    (y,) = run(pm, {"x": x})
    W = weights_of(pm)
    h = np.maximum(x @ W["g1.weight"].T + W["g1.bias"], 0)
    y0 = 0.5 * (h @ W["g2.weight"]) + 2.0 * W["g2.bias"]
    np.testing.assert_allclose(y, y0 @ W["pooler.weight"], rtol=1e-4, atol=1e-4)


def test_gemm_block_is_in_stored_layout():
    lo = index_model(gemm_model())
    a = annotate(lo, spec("  - select: {node: /g1/Gemm}\n    pattern: block\n    block: [8, 16]\n"
                          "    sparsity: 0.5\n"))
    W = a.loaded.weights["g1.weight"]  # [32, 64]: 4 x 4 blocks of 8 x 16 in the stored layout
    nzb = (W.reshape(4, 8, 4, 16) != 0).any(axis=(1, 3))
    allb = (W.reshape(4, 8, 4, 16) != 0).all(axis=(1, 3))
    assert np.array_equal(nzb, allb) and nzb.sum() == 8


def conv_ref(x, w, b=None, pad=0):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))  # N C H W kh kw
    y = np.einsum("nchwij,ocij->nohw", win, w)
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def test_conv_nm_over_input_channels_and_block_and_channel():
    lo = index_model(conv_model())
    s = spec("""\
  - select: {node: /conv1/Conv}
    pattern: nm
    n: 2
    m: 4
    sparsity: 0.5
  - select: {tensor: conv2.weight}
    pattern: channel
    axis: 1
    sparsity: 0.25
""")
    a = annotate(lo, s)
    assert a.selections["conv1.weight"].reduction_axis == 1
    W1 = a.loaded.weights["conv1.weight"]  # [16, 8, 3, 3]: groups of 4 input channels
    assert ((np.moveaxis(W1, 1, -1).reshape(16, 3, 3, 2, 4) != 0).sum(-1) == 2).all()
    W2 = a.loaded.weights["conv2.weight"]  # [8, 16, 1, 1]: 4 of 16 input channels removed whole
    assert (~(W2 != 0).any(axis=(0, 2, 3))).sum() == 4
    x = rand((2, 8, 10, 10), 31)
    (y,) = run(a.loaded.model, {"x": x})
    W = weights_of(a.loaded.model)
    ref = conv_ref(np.maximum(conv_ref(x, W["conv1.weight"], W["conv1.bias"], 1), 0), W["conv2.weight"])
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)

    a = annotate(lo, spec("  - select: {node: /conv1/Conv}\n    pattern: block\n    block: [4, 9]\n"
                          "    sparsity: 0.5\n"))
    M = a.loaded.weights["conv1.weight"].reshape(16, 72)  # [O, I*kh*kw] view
    nz = (M.reshape(4, 4, 8, 9) != 0)
    assert np.array_equal(nz.any(axis=(1, 3)), nz.all(axis=(1, 3)))


def test_channel_axis_out_of_range():
    lo = index_model(mlp_model())
    with pytest.raises(SparsifyError) as ei:
        annotate(lo, spec("  - select: {tensor: fc1.weight}\n    pattern: channel\n    axis: 2\n"
                          "    sparsity: 0.5\n"))
    assert "fc1.weight" in ei.value.message and "axis" in ei.value.message


def test_external_data_model_loads_prunes_and_saves(tmp_path):
    m = mlp_model()
    src = tmp_path / "model.onnx"
    onnx.save_model(m, str(src), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").exists()
    lo = load_model(src)
    s = spec("  - select: {op: MatMul}\n    pattern: block\n    block: [16, 16]\n    sparsity: 0.5\n")
    pm = prune_model(lo, s)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    save_model(pm, out)
    re = load_model(out)
    W = re.weights
    assert np.count_nonzero(W["fc1.weight"]) == W["fc1.weight"].size // 2
    x = rand((2, 64), 4)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    ref = np.maximum(x @ W["fc1.weight"] + W["fc1.bias"], 0) @ W["fc2.weight"] + W["fc2.bias"]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- inspect

def test_inspect_model_rows_and_table():
    W = prune(rand((64, 128), 1), Pattern("block", block=(32, 32)), 0.5)
    rows = inspect_model(index_model(mlp_model({"fc1.weight": W})))
    assert [(r["node"], r["weight"]) for r in rows] == [("/fc1/MatMul", "fc1.weight"), ("/fc2/MatMul", "fc2.weight")]
    r = rows[0]
    assert r["op"] == "MatMul" and r["layout"] == "[K, N] (MatMul B)" and r["shape"] == [64, 128]
    assert r["dtype"] == "float32" and r["density"] == 0.5 and r["zeros"]["block32x32"]
    assert "blocks 32x32" in r["structure"] and rows[1]["structure"] == "dense"
    txt = format_model_table(rows)
    assert "/fc1/MatMul" in txt and "[K, N] (MatMul B)" in txt and "64x128" in txt and "0.500" in txt

    g = inspect_model(index_model(gemm_model()))
    assert g[0]["layout"] == "[N, K] (Gemm B, transB=1)" and g[0]["reduction_axis"] == 1
    assert g[1]["layout"] == "[K, N] (Gemm B)"
    c = inspect_model(index_model(conv_model()))
    assert c[0]["layout"] == "[O, I/g, kh, kw]" and c[0]["shape"] == [16, 8, 3, 3]


def test_inspect_spec_rows_and_table():
    lo = index_model(gemm_model())
    s = parse_spec("version: 1\nrules:\n  - select: {op: Gemm}\n    pattern: unstructured\n    sparsity: 0.5\n"
                   "  - select: {tensor: g2.weight}\n    pattern: block\n    block: [8, 8]\n    sparsity: 0.75\n"
                   "exclude:\n  - {node: '*pooler*'}\n", path="spec.yaml")
    rows = inspect_spec(lo, s)
    assert rows[0]["rule"] == 1 and rows[0]["line"] == 3 and rows[0]["tensors"] == ["g1.weight"]
    assert rows[0]["overridden"] == ["g2.weight"] and rows[0]["excluded"] == ["pooler.weight"]
    assert rows[0]["nodes"] == ["/g1/Gemm"]
    assert rows[0]["density_before"] == 1.0 and rows[0]["density_after"] == pytest.approx(0.5)
    assert rows[1]["tensors"] == ["g2.weight"] and rows[1]["density_after"] == pytest.approx(0.25)
    txt = format_spec_table(rows)
    assert "g1.weight" in txt and "1.000 -> 0.500" in txt and "1 overridden" in txt and "1 excluded" in txt


def test_shapes_for_concrete_input_dims():
    """A traced export's reshape into heads reads its target from Shape nodes and writes -1 heads: with symbolic
    inputs shape inference cannot tell the heads axis; `with_input_dims` infers it for concrete dims, keeps the
    model (and its symbolic inputs) and reuses the weight arrays."""
    from models.bert import BertConfig, build_bert
    from sparsify_onnx.graph import has_symbolic_inputs, with_input_dims
    model = build_bert(BertConfig.preset("tiny"), seed=1, dynamic_shapes=True)
    lo = index_model(model)
    heads = "/encoder/layer.0/attention/self/Reshape_output_0"
    assert not isinstance(lo.shapes[heads][2], int) and has_symbolic_inputs(model)
    fixed = with_input_dims(lo, {"input_ids": (2, 16), "attention_mask": (2, 16)})
    assert fixed.shapes[heads] == (2, 16, 4, 16) and fixed.model is model
    assert all(fixed.weights[k] is lo.weights[k] for k in lo.initializer_names)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
