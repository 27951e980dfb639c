"""K permutation (transform/permute.py): the order, the groups it may reorder, and the model's outputs after it."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from models.bert import BertConfig, build_bert
from sparsify_onnx.annotate import annotate
from sparsify_onnx.graph import index_model, with_input_dims
from sparsify_onnx.spec import parse_spec
from sparsify_onnx.transform.permute import natural_order, natural_residual, permute_k, refine_order

FFN2 = "/encoder/layer.*/output/dense/MatMul"


def _spec(rules: list[tuple[str, str]]) -> str:
    out = ["version: 1", "rules:"]
    for node, pattern in rules:
        out += [f'  - select: {{node: "{node}"}}', f"    {pattern}"]
    return "\n".join(out + ["propagate: true"]) + "\n"


UNSTR90 = "pattern: unstructured\n    sparsity: 0.9"


def _annotated(rules, dtype="fp32", export=None, **cfg):
    """`export`: None (the builder's graph) or "traced" (torch.onnx's tracer before opset 17: reshape targets
    from the input's shape, LayerNorms decomposed); the traced graph is indexed with concrete input dims
    (graph.with_input_dims, what convert does)."""
    model = build_bert(BertConfig.preset("tiny", dtype=dtype, **cfg), seed=1, dynamic_shapes=export == "traced",
                       layer_norm="decomposed" if export == "traced" else "op")
    an = annotate(index_model(model), parse_spec(_spec(rules)))
    if export == "traced":
        an = dataclasses.replace(an, loaded=with_input_dims(an.loaded, {"input_ids": (2, 16),
                                                                        "attention_mask": (2, 16)}))
    return an


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _feeds(an):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (2, 16)).astype(np.int64)
    names = [i.name for i in an.loaded.model.graph.input]
    return {n: (ids if "ids" in n else np.ones((2, 16), np.int64)) for n in names}


@pytest.mark.parametrize("K,N,density", [(768, 768, 0.1), (256, 64, 0.1), (1024, 256, 0.05)])
def test_natural_order_makes_a_90_percent_weight_2of4(K, N, density):
    """At 90% (and 95%) random sparsity the order leaves no group of 4 consecutive k with three or more non-zeros
    in any column (in natural order, 0.37% of the groups have them); it is a permutation of K."""
    mask = np.random.default_rng(K).random((K, N)) < density
    perm = natural_order(mask)
    assert sorted(perm.tolist()) == list(range(K))
    assert natural_residual(mask) > 0 and natural_residual(mask[perm]) == 0


@pytest.mark.parametrize("K,N", [(256, 2048), (384, 2048)])
def test_refine_order_moves_what_stays_past_two_into_the_tail(K, N):
    """Where the greedy order leaves entries past two (a wide weight: every group has to suit N columns), the
    swap search clears every group before the last ``tail`` rows and returns a permutation, the same for a seed;
    the tail holds fewer than the greedy order left in all."""
    mask = np.random.default_rng(5).random((K, N)) < 0.1
    greedy = natural_order(mask)
    before = natural_residual(mask[greedy])
    assert before > 50
    perm = refine_order(mask, greedy, seed=0, tail=64)
    assert sorted(perm.tolist()) == list(range(K))
    assert natural_residual(mask[perm][:K - 64]) == 0
    assert 0 < natural_residual(mask[perm]) < before
    assert np.array_equal(perm, refine_order(mask, greedy, seed=0, tail=64))
    # without a tail: fewer past two than the greedy order, anywhere
    assert natural_residual(mask[refine_order(mask, greedy, seed=0, steps=2000)]) < before


def test_a_wide_weight_keeps_what_stays_past_two_in_the_tail_and_the_outputs_stay():
    """An MLP whose second weight is [256, 2048] (its K is the first layer's output, free): the greedy order leaves
    entries past two, so conversion says it runs the swap search, which clears every group before the last
    TAIL_ROWS rows; onnxruntime gives the same outputs before and after."""
    from models.mlp import build_mlp
    from sparsify_onnx.transform.permute import TAIL_ROWS
    model = build_mlp((64, 256, 2048), seed=3)
    an = annotate(index_model(model), parse_spec(_spec([("/fc2/MatMul", UNSTR90)])))
    said: list[str] = []
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,), progress=said.append)
    assert [g["nodes"] for g in res.groups] == [["/fc2/MatMul"]]
    assert any("swap search" in line for line in said), said
    w2 = {t.name: numpy_helper.to_array(t) for t in res.model.graph.initializer}["fc2.weight"] != 0
    assert natural_residual(w2[:256 - TAIL_ROWS]) == 0 and 0 < natural_residual(w2) == res.groups[0]["residual_after"]
    x = {"input": np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)}
    np.testing.assert_allclose(_run(res.model, x)[0], _run(an.loaded.model, x)[0], rtol=1e-5, atol=1e-5)


def test_a_column_denser_than_half_of_k_gets_a_tail_for_its_excess():
    """A column with more non-zeros than K / 2 (an outlier feature) cannot fit two per group of 4: its excess stays
    past two in any order. The tail grows to hold it at two per group (tail_rows: 2 rows per entry, in steps of 64),
    so what stays past two fills the last tail rows' chunks only, not chunks all over K."""
    from sparsify_onnx.transform.permute import TAIL_ROWS, tail_rows, unit_order
    rng = np.random.default_rng(11)
    K, N = 512, 256
    mask = rng.random((K, N)) < 0.1
    assert tail_rows(mask) == TAIL_ROWS
    mask[:, 7] = rng.random(K) < 0.72  # ~369 non-zeros: ~113 past K / 2
    excess = int(mask[:, 7].sum()) - K // 2
    tail = tail_rows(mask)
    assert tail == -(-2 * excess // 64) * 64 > TAIL_ROWS
    perm = unit_order(mask, 1, 0)
    assert sorted(perm.tolist()) == list(range(K))
    m = mask[perm]
    assert natural_residual(m[:K - tail]) == 0 and natural_residual(m) >= excess


def test_natural_residual_counts_entries_past_two():
    m = np.zeros((8, 3), bool)
    m[0:3, 0] = True  # 3 in a group: 1 past two
    m[4:8, 1] = True  # 4: 2 past two
    m[[0, 5], 2] = True  # 1 per group: none
    assert natural_residual(m) == 3


@pytest.mark.parametrize("export", [None, "traced"])
def test_every_linear_is_reordered_and_the_outputs_stay(export):
    """BERT with every linear 90% unstructured: FFN2's K (the intermediate features) is reordered together with
    FFN1's weight columns and bias; the attention output's K (heads x head size) per head, together with V's
    columns and bias, each head's k staying in its head. Q, K, V (one order for the three) and FFN1 read a
    LayerNorm's output: their K is reordered with the residual stream up to the next LayerNorm (the attention
    output's and FFN2's columns and bias, that LayerNorm's scale and bias), and a Gather after each LayerNorm maps
    its input's order to its output's. Every weight then holds at most two non-zeros per group of 4 in every
    column; onnxruntime gives the same outputs before and after. The same holds for the graph torch.onnx's tracer
    writes (the Shape nodes it reads reshape targets from see the lengths only)."""
    an = _annotated([("/encoder/layer.*/MatMul", UNSTR90)], hidden=128, heads=4, intermediate=512, export=export)
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,))
    inits = {t.name: numpy_helper.to_array(t) for t in res.model.graph.initializer}
    old = an.loaded.weights
    by_node = {g["nodes"][0]: g for g in res.groups}
    assert len(res.groups) == 8 and not [line for line in res.log if "not permuted" in line], res.log
    for i in range(2):
        L, p = f"/encoder/layer.{i}/", f"encoder.layer.{i}."
        qkv = by_node[L + "attention/self/query/MatMul"]
        assert qkv["nodes"] == [L + f"attention/self/{n}/MatMul" for n in ("query", "key", "value")]
        assert {p + "attention.output.dense.weight[axis 1]", p + "attention.output.dense.bias[axis 0]",
                p + "attention.output.LayerNorm.weight[axis 0]"} <= set(qkv["initializers"])
        ffn1 = by_node[L + "intermediate/dense/MatMul"]
        assert {p + "output.dense.weight[axis 1]", p + "output.LayerNorm.weight[axis 0]"} <= set(ffn1["initializers"])
        for node, w2, w1, b1, heads in ((L + "output/dense/MatMul", "output.dense.weight",
                                         "intermediate.dense.weight", "intermediate.dense.bias", 1),
                                        (L + "attention/output/dense/MatMul",
                                         "attention.output.dense.weight", "attention.self.value.weight",
                                         "attention.self.value.bias", 4)):
            g = by_node[node]
            w2, w1, b1 = p + w2, p + w1, p + b1
            assert g["weights"] == [w2] and g["heads"] == heads and g["residual_after"] == 0 < g["residual_before"]
            assert {f"{w1}[axis 1]", f"{b1}[axis 0]", f"{w2}[axis 0]"} == set(g["initializers"])
            perm = np.array([int(np.flatnonzero(old[b1] == v)[0]) for v in inits[b1]])  # (b1's entries differ)
            # (w1's rows and w2's columns also moved, with the residual stream's order)
            assert np.array_equal(np.sort(inits[w2], axis=1), np.sort(old[w2][perm], axis=1))
            d = perm.size // heads
            assert (perm // d == np.arange(perm.size) // d).all()  # each head's k stay in their head
        for w in ("query", "key", "value"):
            assert natural_residual(inits[p + f"attention.self.{w}.weight"] != 0) == 0
        for w in ("intermediate.dense", "output.dense", "attention.output.dense"):
            assert natural_residual(inits[p + f"{w}.weight"] != 0) == 0
    # every LayerNorm: its input and output orders differ (the last one's output is the graph's, in its own order)
    assert len(res.gathers) == 5 and all(r["moved"] > 0 for r in res.gathers)
    gathers = [n for n in res.model.graph.node if n.op_type == "Gather" and n.name.endswith("/Order")]
    assert len(gathers) == 5 and gathers[-1].output[0] == res.model.graph.output[0].name
    feeds = _feeds(an)
    for a, b in zip(_run(an.loaded.model, feeds), _run(res.model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_heads_in_a_traced_graph_need_concrete_input_dims():
    """The tracer's reshape into heads takes its target from Shape nodes: with symbolic input dims shape inference
    cannot tell the heads axis (the attention output keeps its K order); with concrete ones it can."""
    an = _annotated([("/encoder/layer.*/attention/output/dense/MatMul", UNSTR90)], export="traced")
    assert len(permute_k(an.loaded, an.selections, dtypes=(np.float32,)).groups) == 2
    symbolic = index_model(an.loaded.model)
    assert permute_k(symbolic, an.selections, dtypes=(np.float32,)).groups == []


def test_a_reshape_whose_target_is_read_from_shapes_keeps_the_order():
    """GPT-2's Conv1D as torch.onnx's tracer writes it: x.view(-1, x.size(-1)) -> Gemm, the target's last entry
    read from a Shape node. Compaction could not edit that entry, but an order keeps every length: FFN1's K (a
    LayerNorm's output through the reshape) and FFN2's K are both reordered, and the outputs stay."""
    import onnx
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    H, F = 64, 256
    w1 = rng.standard_normal((H, F)).astype(np.float32) * (rng.random((H, F)) < 0.1)
    w2 = rng.standard_normal((F, H)).astype(np.float32) * (rng.random((F, H)) < 0.1)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (w1, "fc.weight"), (w2, "proj.weight"), (rng.standard_normal(F).astype(np.float32), "fc.bias"),
        (rng.standard_normal(H).astype(np.float32), "proj.bias"), (np.ones(H, np.float32), "ln.weight"),
        (np.zeros(H, np.float32), "ln.bias"), (np.array([-1], np.int64), "minus1"),
        (np.array(2, np.int64), "two"), (np.array([0], np.int64), "zero"))]
    n = helper.make_node
    nodes = [n("LayerNormalization", ["x", "ln.weight", "ln.bias"], ["h"], name="ln"),
             n("Shape", ["h"], ["s"]), n("Gather", ["s", "two"], ["d"], axis=0),
             n("Unsqueeze", ["d", "zero"], ["d1"]), n("Concat", ["minus1", "d1"], ["t"], axis=0),
             n("Reshape", ["h", "t"], ["h2"]), n("Gemm", ["h2", "fc.weight", "fc.bias"], ["a"], name="fc"),
             n("Relu", ["a"], ["r"]), n("Gemm", ["r", "proj.weight", "proj.bias"], ["p"], name="proj"),
             n("Shape", ["x"], ["sx"]), n("Reshape", ["p", "sx"], ["p3"]), n("Add", ["p3", "x"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", H])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", H])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    spec = parse_spec("version: 1\nrules:\n  - select: {op: Gemm, node: \"*\"}\n    pattern: unstructured\n")
    an = annotate(index_model(model), spec)
    lo = with_input_dims(an.loaded, {"x": (2, 8, H)})
    res = permute_k(lo, an.selections, dtypes=(np.float32,))
    assert sorted(g["nodes"][0] for g in res.groups) == ["fc", "proj"], res.log
    assert len(res.gathers) == 1  # (the LayerNorm's output in fc's order; the input x is the graph's)
    X = np.random.default_rng(1).standard_normal((2, 8, H)).astype(np.float32)
    np.testing.assert_allclose(_run(res.model, {"x": X})[0], _run(model, {"x": X})[0], rtol=1e-4, atol=1e-4)


def _fused_qkv(H=64, opset=17):
    """x -> MatMul(W_qkv) + bias -> Split into q, k, v (GPT-2's fused projection) -> y1 = q + k, y2 = v @ W_o."""
    import onnx
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    w = {"qkv.weight": rng.standard_normal((H, 3 * H)), "qkv.bias": rng.standard_normal(3 * H),
         "o.weight": rng.standard_normal((H, H)) * (rng.random((H, H)) < 0.1)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([H] * 3, np.int64), "sizes"))
    n = helper.make_node
    nodes = [n("MatMul", ["x", "qkv.weight"], ["a"], name="qkv"), n("Add", ["a", "qkv.bias"], ["b"]),
             n("Split", ["b", "sizes"], ["q", "k", "v"], axis=-1), n("Add", ["q", "k"], ["y1"]),
             n("MatMul", ["v", "o.weight"], ["y2"], name="o")]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, ["n", H])],
                          [vi("y1", TensorProto.FLOAT, ["n", H]), vi("y2", TensorProto.FLOAT, ["n", H])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("qkv", ["unstructured", "block"])
def test_a_split_piece_takes_an_order_of_its_slice(qkv):
    """A Split's pieces are groups of their own: W_o's K (the v piece) is reordered together with v's slice of the
    fused projection's columns and bias (q and k keep theirs), and the outputs stay. A block-sparse fused weight
    would lose its blocks along those columns: then nothing is reordered."""
    model = _fused_qkv()
    rules = 'version: 1\nrules:\n  - select: {node: "o"}\n    pattern: unstructured\n'
    if qkv == "block":
        rules += '  - select: {node: "qkv"}\n    pattern: block\n    block: [16, 16]\n    sparsity: 0.5\n'
    an = annotate(index_model(model), parse_spec(rules))
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,))
    if qkv == "block":
        assert res.groups == [] and res.edits == {} and "fixed" in res.log[0], res.log
        return
    (grp,), H = res.groups, 64
    assert grp["nodes"] == ["o"] and {"qkv.weight[axis 1, 128:192]", "qkv.bias[axis 0, 128:192]"} <= set(
        grp["initializers"])
    old, new = an.loaded.weights["qkv.weight"], res.edits["qkv.weight"]
    np.testing.assert_array_equal(new[:, :2 * H], old[:, :2 * H])
    assert not np.array_equal(new[:, 2 * H:], old[:, 2 * H:])
    X = np.random.default_rng(1).standard_normal((5, H)).astype(np.float32)
    for a, b in zip(_run(model, {"x": X}), _run(res.model, {"x": X})):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_fp16_weights_only_by_default():
    """Only the fp16 cover gains from the order, so fp32 weights are left as they are unless asked."""
    an = _annotated([(FFN2, UNSTR90)])
    assert permute_k(an.loaded, an.selections).groups == []


def test_a_block_sparse_producer_keeps_its_columns():
    """FFN1 block sparse: reordering its output features would break its blocks, so FFN2 is not reordered (and the
    log says why)."""
    an = _annotated([("/encoder/layer.*/intermediate/dense/MatMul", "pattern: block\n    block: [16, 16]\n"
                                                                     "    sparsity: 0.5"), (FFN2, UNSTR90)])
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,))
    # (the FFN2 pattern also matches the attention output, which is reordered with V)
    assert not any("intermediate" in t for t in res.edits) and all("/output/dense" not in g["nodes"][0] or
                                                                  "attention" in g["nodes"][0] for g in res.groups)
    assert any("block" in line and "not permuted" in line for line in res.log), res.log


def test_a_2of4_weight_takes_the_order_across_its_groups():
    """FFN1 unstructured, FFN2 2:4: FFN1's K is reordered with the residual stream, which carries FFN2's columns;
    a 2:4 weight's columns move whole, so FFN2 stays 2:4 along K (its own K is never permuted: `_permutable`).
    onnxruntime gives the same outputs."""
    from sparsify_onnx.transform.permute import _permutable
    an = _annotated([("/encoder/layer.*/intermediate/dense/MatMul", UNSTR90),
                     (FFN2, "pattern: nm\n    n: 2\n    m: 4\n    sparsity: 0.5")], hidden=128, heads=4, intermediate=512)
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,))
    nodes = {n for g in res.groups for n in g["nodes"]}
    assert {f"/encoder/layer.{i}/intermediate/dense/MatMul" for i in range(2)} <= nodes
    w2 = "encoder.layer.0.output.dense.weight"
    assert any(f"{w2}[axis 1]" in g["initializers"] for g in res.groups)
    assert natural_residual(res.edits[w2] != 0) == 0  # still at most two per group of 4 along K
    sel = an.selections[w2]
    assert _permutable(sel, 1) and not _permutable(sel, sel.reduction_axis)
    feeds = _feeds(an)
    for a, b in zip(_run(an.loaded.model, feeds), _run(res.model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_transform_reorders_for_cuda_only():
    """transform() runs the order when it plans CUDA kernels (recorded in Plan.permutation); CPU-only plans keep
    the model's K order (the CSR kernels do not care), and so does `convert --no-reorder`."""
    from sparsify_onnx.propagate import propagate
    from sparsify_onnx.transform import transform
    from sparsify_onnx.transform.replace import TransformOptions
    an = _annotated([(FFN2, UNSTR90)], dtype="fp16", layers=1)
    prop = propagate(an, enabled=True)
    cpu = transform(prop, TransformOptions(devices=("cpu",), policy="always"))
    assert cpu.permutation == {}
    cuda = transform(prop, TransformOptions(devices=("cpu", "cuda"), policy="always"))
    groups = cuda.permutation["groups"]
    assert sorted(g["nodes"][0] for g in groups) == ["/encoder/layer.0/attention/output/dense/MatMul",
                                                     "/encoder/layer.0/output/dense/MatMul"]
    assert all(g["residual_after"] == 0 for g in groups)
    keep = transform(prop, TransformOptions(devices=("cpu", "cuda"), policy="always", permute=False))  # --no-reorder
    assert keep.permutation == {}


@pytest.mark.parametrize("head_constant", [False, True])
def test_heads_are_ordered_apart_unless_a_constant_spans_them(head_constant):
    """x -> V -> split into 4 heads of 16 -> (+ c[16], one constant shared by every head) -> merge -> Wo: without
    c, Wo's K is ordered per head with V's columns (outputs unchanged); with c, a per-head order would need c in
    four different orders at once, so nothing is reordered and the log says why."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent / "propagate"))
    from proputil import helper, init, make_model, vi

    rng = np.random.default_rng(4)
    wv = rng.standard_normal((64, 64)).astype(np.float32)
    wo = (rng.standard_normal((64, 96)) * (rng.random((64, 96)) < 0.1)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Reshape", ["v", "split"], ["vh"])]
    inits = [init("wv", wv), init("wo", wo), init("split", np.array([0, 0, 4, 16], np.int64)),
             init("merge", np.array([0, 0, 64], np.int64))]
    if head_constant:
        nodes.append(helper.make_node("Add", ["vh", "c"], ["vc"]))
        inits.append(init("c", rng.standard_normal(16).astype(np.float32)))
    nodes += [helper.make_node("Reshape", ["vc" if head_constant else "vh", "merge"], ["ctx"]),
              helper.make_node("MatMul", ["ctx", "wo"], ["y"])]
    model = make_model(nodes, [vi("x", ["b", 8, 64])], [vi("y", ["b", 8, 96])], inits)
    an = annotate(index_model(model), parse_spec(_spec([("MatMul_wo", UNSTR90)]).replace(
        '{node: "MatMul_wo"}', '{tensor: "wo"}')))
    res = permute_k(an.loaded, an.selections, dtypes=(np.float32,))
    if head_constant:
        assert res.groups == [] and any("constant runs along the head-size axis" in m for m in res.log), res.log
        return
    (g,) = res.groups
    assert g["heads"] == 4 and set(g["initializers"]) == {"wv[axis 1]", "wo[axis 0]"}
    assert natural_residual(numpy_helper.to_array(
        next(t for t in res.model.graph.initializer if t.name == "wo")) != 0) == 0
    x = {"x": rng.standard_normal((2, 8, 64)).astype(np.float32)}
    np.testing.assert_allclose(_run(an.loaded.model, x)[0], _run(res.model, x)[0], rtol=1e-4, atol=1e-4)


def test_orders_searched_in_processes_are_the_ones_searched_here():
    """permute_k with two processes gives the same orders, byte for byte, as with one (each search is seeded)."""
    from sparsify_onnx.transform import permute
    an = _annotated([("/encoder/layer.*/MatMul", UNSTR90)], hidden=128, heads=4, intermediate=512)
    permute._MEMO.clear()
    said: list = []
    two = permute_k(an.loaded, an.selections, dtypes=(np.float32,), jobs=2, progress=said.append)
    assert any("(2 processes)" in line for line in said), said
    permute._MEMO.clear()
    one = permute_k(an.loaded, an.selections, dtypes=(np.float32,), jobs=1)
    assert two.edits.keys() == one.edits.keys()
    assert all(np.array_equal(two.edits[k], one.edits[k]) for k in one.edits)
