"""bench/latency.py: inputs, shape parsing, timing and the interleaved comparison."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.bert import BertConfig, build_bert
from models.mlp import build_mlp
from sparsify_onnx.bench.latency import (Timing, compare, format_compare, index_limits, make_inputs,
                                         parse_input_shapes, time_session)
from sparsify_onnx.errors import SparsifyError


def _session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def bert():
    return build_bert(BertConfig.preset("tiny", layers=1, vocab=300, max_position=64))


# ----------------------------------------------------------------------------------------------
# parse_input_shapes


def test_parse_input_shapes_ok():
    assert parse_input_shapes(["input_ids=8x128", " attention_mask = 8,128 ", "x=3"]) == \
        {"input_ids": (8, 128), "attention_mask": (8, 128), "x": (3,)}
    assert parse_input_shapes([]) == {} and parse_input_shapes(None) == {}
    assert parse_input_shapes(["a=2x3", "a=2x3"]) == {"a": (2, 3)}


@pytest.mark.parametrize("bad", ["input_ids", "=8x128", "input_ids=", "input_ids=8xa", "input_ids=8x-1",
                                 "input_ids=0x4", "input_ids=8x", "input_ids=8.5"])
def test_parse_input_shapes_errors_are_user_errors(bad):
    with pytest.raises(SparsifyError) as e:
        parse_input_shapes([bad])
    assert e.value.hint and "NAME=" in e.value.hint


def test_parse_input_shapes_conflict():
    with pytest.raises(SparsifyError, match="twice"):
        parse_input_shapes(["a=2x3", "a=3x3"])


# ----------------------------------------------------------------------------------------------
# make_inputs


def test_make_inputs_token_ids_inside_the_embedding_table(bert):
    feeds = make_inputs(bert, {"input_ids": (4, 50)}, seed=3)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.shape == (4, 50) and mask.shape == (4, 50)  # attention_mask shares batch/sequence
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < 300 and ids.max() > 200  # spread over the whole table
    assert (mask == 1).all()
    _session(bert).run(None, feeds)  # valid for the model
    assert index_limits(bert) == {"input_ids": 300}


def test_make_inputs_defaults_seed_and_limits(bert):
    f = make_inputs(bert)
    assert f["input_ids"].shape == (1, 128)
    assert np.array_equal(make_inputs(bert, seed=1)["input_ids"], make_inputs(bert, seed=1)["input_ids"])
    assert not np.array_equal(make_inputs(bert, seed=1)["input_ids"], make_inputs(bert, seed=2)["input_ids"])
    f = make_inputs(bert, {"input_ids": (2, 16)}, vocab_limits={"input_ids": 5})
    assert f["input_ids"].max() < 5
    f = make_inputs(bert, defaults={"batch": 3, "sequence": 7})
    assert f["input_ids"].shape == (3, 7)


def test_make_inputs_follows_casts_and_other_dtypes():
    # ids (int32) -> Cast -> Gather(table[17, 4]); a float input; a bool input; an unknown int input
    table = numpy_helper.from_array(np.ones((17, 4), np.float32), "table")
    nodes = [helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64),
             helper.make_node("Gather", ["table", "ids64"], ["emb"]),
             helper.make_node("ReduceSum", ["emb"], ["s"], keepdims=0),
             helper.make_node("Identity", ["x"], ["y"]),
             helper.make_node("Identity", ["flag"], ["f"]),
             helper.make_node("Identity", ["other"], ["o"])]
    g = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch_size", "seq_len"]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch_size", 6]),
        helper.make_tensor_value_info("flag", TensorProto.BOOL, [2]),
        helper.make_tensor_value_info("other", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in ("s", "y", "f", "o")], [table])
    m = helper.make_model(g)
    f = make_inputs(m, {"ids": (5, 40)}, seed=0)
    assert f["ids"].dtype == np.int32 and f["ids"].shape == (5, 40) and 0 <= f["ids"].min() and f["ids"].max() < 17
    assert f["x"].dtype == np.float16 and f["x"].shape == (5, 6)  # batch_size bound from ids
    assert f["flag"].dtype == np.bool_ and f["flag"].all()
    assert (f["other"] == 0).all()
    f = make_inputs(m)
    assert f["ids"].shape == (1, 128)  # batch_size / seq_len recognised as batch / sequence


def test_make_inputs_from_a_path(tmp_path):
    p = tmp_path / "mlp.onnx"
    onnx.save_model(build_mlp([16, 32, 8]), str(p))
    f = make_inputs(p, {"input": (3, 16)})
    assert f["input"].dtype == np.float32 and f["input"].shape == (3, 16) and f["input"].std() > 0.5


@pytest.mark.parametrize("shapes,match", [
    ({"input_id": (2, 8)}, "did you mean 'input_ids'"),
    ({"input_ids": (2, 8, 1)}, "rank"),
    ({"input_ids": (2, 8), "attention_mask": (2, 9)}, "sequence"),
])
def test_make_inputs_user_errors(bert, shapes, match):
    with pytest.raises(SparsifyError, match=match):
        make_inputs(bert, shapes)


def test_make_inputs_fixed_dim_conflict_and_unknown_dim():
    with pytest.raises(SparsifyError, match="fixed dim 16"):
        make_inputs(build_mlp([16, 8]), {"input": (2, 15)})
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["width"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["width"])])
    with pytest.raises(SparsifyError, match="width") as e:
        make_inputs(helper.make_model(g))
    assert "--input-shape x=" in e.value.hint
    assert make_inputs(helper.make_model(g), {"x": (4,)})["x"].shape == (4,)


# ----------------------------------------------------------------------------------------------
# timing


def test_timing_statistics():
    t = Timing.from_runs([float(x) for x in range(1, 101)])
    assert t.median_ms == pytest.approx(50.5) and t.min_ms == 1.0
    assert t.p90_ms == pytest.approx(90.1) and t.p99_ms == pytest.approx(99.01)
    assert t.to_dict(with_runs=False)["n_runs"] == 100 and "runs" not in t.to_dict(with_runs=False)


def test_time_session_sane():
    m = build_mlp([64, 128, 64])
    sess = _session(m)
    feeds = make_inputs(m, {"input": (8, 64)})
    t = time_session(sess, feeds, warmup=2, repeat=15)
    assert len(t.runs) == 15 and t.device == "cpu" and t.iobinding is False
    assert 0 < t.min_ms <= t.median_ms <= t.p90_ms <= t.p99_ms < 1000
    t = time_session(sess, feeds, warmup=0, repeat=3, min_time_s=0.05)
    assert len(t.runs) > 3 and sum(t.runs) >= 25  # kept going until min_time_s (50 ms)
    t = time_session(sess, feeds, warmup=1, repeat=3, use_iobinding=True)  # IO binding on the CPU works too
    assert t.iobinding and len(t.runs) == 3
    with pytest.raises(SparsifyError):
        time_session(sess, feeds, repeat=0)
    with pytest.raises(SparsifyError, match="needs input 'input'"):
        time_session(sess, {"x": feeds["input"]})


def test_compare_two_sessions():
    small, big = build_mlp([64, 16, 64], seed=1), build_mlp([64, 1024, 1024, 64], seed=1)
    feeds = make_inputs(small, {"input": (32, 64)})
    res = compare({"big": _session(big), "small": _session(small)}, feeds, baseline="big", warmup=3, repeat=25)
    assert res["baseline"] == "big" and res["rounds"] == 25 and res["interleaved"]
    assert set(res["systems"]) == {"big", "small"}
    for d in res["systems"].values():
        assert d["n_runs"] == 25 and len(d["runs"]) == 25
        assert 0 < d["median_ms"] <= d["p90_ms"] <= d["p99_ms"]
        assert d["providers"] == ["CPUExecutionProvider"] and d["threads"] == 1
    assert res["systems"]["big"]["speedup"] == pytest.approx(1.0)
    # ~250x fewer MACs: the small one must come out faster even on a noisy machine
    assert res["speedup"]["small"] == res["systems"]["small"]["speedup"] > 2.0
    assert res["inputs"] == {"input": {"shape": [32, 64], "dtype": "float32"}}
    assert res["max_abs_diff"]["small"]["output"] > 0  # different models, different outputs
    text = format_compare(res)
    assert "big" in text and "small" in text and "(baseline)" in text and "x" in text


def test_compare_same_model_agrees_and_errors():
    m = build_mlp([32, 64, 32])
    feeds = make_inputs(m, {"input": (4, 32)})
    a, b = _session(m), _session(m)
    res = compare({"a": a, "b": b}, feeds, warmup=1, repeat=5)
    assert res["baseline"] == "a" and res["max_abs_diff"] == {"b": {"output": 0.0}}
    with pytest.raises(SparsifyError, match="not one of the timed systems") as e:
        compare({"a": a, "b": b}, feeds, baseline="engine")
    assert "a, b" in e.value.hint
    with pytest.raises(SparsifyError):
        compare({}, feeds)


class _FakeSession:
    """Records the order in which compare() runs the systems."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def get_inputs(self):
        return [type("I", (), {"name": "x"})()]

    def get_outputs(self):
        return [type("O", (), {"name": "y"})()]

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def run(self, names, feeds):
        self.log.append(self.name)
        return [feeds["x"]]


def test_compare_interleaves_rounds_and_rotates_the_order():
    log: list[str] = []
    systems = {n: _FakeSession(n, log) for n in ("a", "b", "c")}
    res = compare(systems, {"x": np.zeros(2, np.float32)}, warmup=0, repeat=6, check_outputs=False)
    assert log == ["a", "b", "c", "b", "c", "a", "c", "a", "b"] * 2
    assert all(d["n_runs"] == 6 for d in res["systems"].values())
    assert res["systems"]["a"]["threads"] is None  # unknown for a non-onnxruntime session
