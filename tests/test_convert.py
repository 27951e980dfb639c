"""End to end: model + spec -> engine directory -> same outputs as the pruned dense model."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from helpers import BLOCK16_SPEC, linear_chain, write_spec
from sparsify_onnx import SparsifyError, load_engine
from sparsify_onnx.annotate import annotate
from sparsify_onnx.graph import load_model
from sparsify_onnx.pipeline import ConvertOptions, convert
from sparsify_onnx.spec import load_spec


def _convert(tmp_path, model, spec_text, name="engine", **kw):
    mp = tmp_path / f"{name}.onnx"
    onnx.save(model, mp)
    sp = write_spec(tmp_path / f"{name}.yaml", spec_text)
    opts = ConvertOptions(device="cpu", policy=kw.pop("policy", "always"), bench=kw.pop("bench", False),
                          quiet=True, input_shapes=kw.pop("input_shapes", {"x": (37, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value)}), **kw)
    out = tmp_path / name
    report = convert(mp, sp, out, opts)
    return mp, sp, out, report


def _pruned_reference(mp, sp):
    return annotate(load_model(mp), load_spec(sp)).loaded.model


def _run_both(out, mp, sp, x):
    eng = load_engine(out)
    ref = ort.InferenceSession(_pruned_reference(mp, sp).SerializeToString(), providers=["CPUExecutionProvider"])
    return eng.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]


def _ops(path):
    return [(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node]


BLOCK_SPEC = BLOCK16_SPEC


def test_block_mlp_engine_matches_pruned_model(tmp_path):
    mp, sp, out, report = _convert(tmp_path, linear_chain((64, 96, 80, 64)), BLOCK_SPEC)
    for f in ("model.onnx", "libsparsify_ops.so", "manifest.json", "report.json", "report.md"):
        assert (out / f).is_file(), f
    assert (out / "src").is_dir() and any((out / "src").rglob("*.cc"))
    ops = _ops(out / "model.onnx")
    assert ops.count(("ai.sparsify", "SparseLinear")) == 3
    assert ("", "MatMul") not in ops and ("", "Relu") not in ops  # bias and Relu fused
    x = np.random.default_rng(1).standard_normal((37, 64)).astype(np.float32)
    got, ref = _run_both(out, mp, sp, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["files"]) >= {"model.onnx", "libsparsify_ops.so"}
    assert m["source_model"]["sha256"] and m["spec"]["sha256"]
    assert [p["action"] for p in m["plan"]].count("sparse") == 3
    assert report["verification"]["passed"]


@pytest.mark.parametrize("pattern", [
    "pattern: unstructured\n    sparsity: 0.9",
    "pattern: nm\n    n: 2\n    m: 4",
    "pattern: tile\n    granularity: 32\n    sparsity: 0.75",
])
def test_other_patterns(tmp_path, pattern):
    spec = f"""
version: 1
rules:
  - select: {{node: "/layers.*/MatMul"}}
    {pattern}
propagate: false
"""
    if "nm" in pattern:
        spec = spec.replace("m: 4", "m: 4\n    sparsity: 0.5")
    mp, sp, out, _ = _convert(tmp_path, linear_chain((64, 128, 64)), spec)
    assert ("ai.sparsify", "SparseLinear") in _ops(out / "model.onnx")
    x = np.random.default_rng(2).standard_normal((37, 64)).astype(np.float32)
    got, ref = _run_both(out, mp, sp, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_gemm_transb_alpha_beta(tmp_path):
    spec = """
version: 1
rules:
  - select: {op: Gemm, node: "*"}
    pattern: block
    block: [16, 16]
    sparsity: 0.7
propagate: false
"""
    mp, sp, out, _ = _convert(tmp_path, linear_chain((64, 96, 64), gemm=True), spec)
    assert _ops(out / "model.onnx").count(("ai.sparsify", "SparseLinear")) == 2
    x = np.random.default_rng(3).standard_normal((37, 64)).astype(np.float32)
    got, ref = _run_both(out, mp, sp, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("form", [True, "export"])
def test_erf_gelu_and_residual_fused(tmp_path, form):
    spec = BLOCK_SPEC
    mp, sp, out, report = _convert(tmp_path, linear_chain((64, 64, 64, 64), erf_gelu=form, residual=True), spec)
    ops = _ops(out / "model.onnx")
    assert ("", "Erf") not in ops and ("", "Add") not in ops, ops
    sl = [n for n in onnx.load(str(out / "model.onnx")).graph.node if n.op_type == "SparseLinear"]
    assert any(len(n.input) == 4 and n.input[3] for n in sl)  # a residual input
    x = np.random.default_rng(4).standard_normal((37, 64)).astype(np.float32)
    got, ref = _run_both(out, mp, sp, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_plain_onnxruntime_can_load_the_library(tmp_path):
    mp, sp, out, _ = _convert(tmp_path, linear_chain((64, 64)), BLOCK_SPEC)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(out / "libsparsify_ops.so"))
    sess = ort.InferenceSession(str(out / "model.onnx"), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(5).standard_normal((3, 64)).astype(np.float32)
    ref = ort.InferenceSession(_pruned_reference(mp, sp).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, rtol=1e-4, atol=1e-5)


def test_tampered_engine_is_refused(tmp_path):
    _, _, out, _ = _convert(tmp_path, linear_chain((64, 64)), BLOCK_SPEC)
    load_engine(out)  # fine as written
    lib = out / "libsparsify_ops.so"
    data = bytearray(lib.read_bytes())
    data[-1] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(SparsifyError, match="modified: libsparsify_ops.so"):
        load_engine(out)


def test_failed_convert_leaves_nothing(tmp_path):
    spec = """
version: 1
rules:
  - select: {node: "/no/such/node"}
    pattern: block
    block: [16, 16]
    sparsity: 0.8
"""
    with pytest.raises(SparsifyError):
        _convert(tmp_path, linear_chain((64, 64)), spec)
    assert not (tmp_path / "engine").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".engine")]


def test_cost_model_keeps_dense_when_sparse_does_not_pay(tmp_path):
    spec = BLOCK_SPEC.replace("sparsity: 0.8", "sparsity: 0.05")
    mp, sp, out, report = _convert(tmp_path, linear_chain((64, 64)), spec, policy="auto")
    assert ("ai.sparsify", "SparseLinear") not in _ops(out / "model.onnx")
    plan = json.loads((out / "manifest.json").read_text())["plan"]
    assert plan[0]["action"] == "dense" and "cost model" in plan[0]["reason"]


def test_gemm_transa(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(8)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    c = rng.standard_normal(48).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="/fc/Gemm", transA=1, alpha=1.5, beta=0.5)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, "batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 48])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    spec = """
version: 1
rules:
  - select: {op: Gemm, node: "*"}
    pattern: block
    block: [16, 16]
    sparsity: 0.75
propagate: false
"""
    mp = tmp_path / "m.onnx"
    onnx.save(m, mp)
    sp = write_spec(tmp_path / "s.yaml", spec)
    convert(mp, sp, tmp_path / "e", ConvertOptions(device="cpu", policy="always", bench=False, quiet=True,
                                                   input_shapes={"x": (64, 9)}))
    assert ("ai.sparsify", "SparseLinear") in _ops(tmp_path / "e" / "model.onnx")
    x = rng.standard_normal((64, 9)).astype(np.float32)
    got = load_engine(tmp_path / "e").run(None, {"x": x})[0]
    ref = ort.InferenceSession(_pruned_reference(mp, sp).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_verification_failure_is_a_clear_user_error():
    from sparsify_onnx.engine import compare_outputs, raise_if_failed
    ref = {"y": np.ones((4, 4), np.float32)}
    ok = compare_outputs({"y": ref["y"] + 1e-6}, ref, 1e-4)
    assert ok.passed
    raise_if_failed(ok)
    bad = compare_outputs({"y": ref["y"] * 1.01}, ref, 1e-4)
    assert not bad.passed and bad.outputs["y"]["max_rel"] == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(SparsifyError, match="differ from the pruned dense model") as e:
        raise_if_failed(bad)
    assert "max rel" in e.value.details
    nan = compare_outputs({"y": ref["y"] * np.nan}, ref, 1e-4)
    assert not nan.passed and "non-finite" in nan.outputs["y"]["error"]


def test_engine_with_cuda_only_kernels_is_not_verified_on_a_host_without_a_gpu():
    """An fp16 engine built for CUDA on a host without a GPU: its sparse ops have no CPU kernel (the CPU kernels are
    fp32), so verify and bench cannot run here; convert says why and what to run on the GPU host instead of
    failing inside onnxruntime. With a CPU kernel for every op, or a CUDA provider, nothing is skipped."""
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
    from sparsify_onnx.pattern import Pattern
    from sparsify_onnx.pipeline import runs_nowhere_here

    def spec(device, dtype, h):
        return (KernelSpec("linear", "f", device, dtype, Pattern("nm", n=2, m=4), 64, 64, Epilogue(),
                           tables_hash=h), None)
    cpu_only = ["CPUExecutionProvider"]
    why = runs_nowhere_here([spec("cuda", "fp16", "a"), spec("cuda", "fp16", "b")], cpu_only, "fp16", "eng")
    assert why and why.startswith("2 sparse op(s) have only CUDA kernels") and "verify eng --provider cuda" in why
    both = [spec("cpu", "fp32", "a"), spec("cuda", "fp32", "a")]
    assert runs_nowhere_here(both, cpu_only, "fp32", "eng") is None
    assert runs_nowhere_here([spec("cuda", "fp16", "a")], ["CUDAExecutionProvider", "CPUExecutionProvider"], "fp16",
                             "eng") is None
    # every sparse op kept dense, but fp16 LayerNormGather ops (a K permutation for CUDA): not here either
    why = runs_nowhere_here([], cpu_only, "fp16", "eng", fp16_layernorms=3)
    assert why and why.startswith("3 fp16 LayerNormGather op(s) run on CUDA only")


@pytest.mark.parametrize("refuse", ["reference", "engine", None])
def test_timing_sessions_fall_back_where_graph_capture_is_refused(tmp_path, monkeypatch, refuse):
    """--cuda-graph's sessions: where onnxruntime refuses to capture either model (it places some nodes on the CPU),
    both open on the fallback providers and the reason names the refused one; otherwise the graph sessions are
    used as they are. (onnxruntime's refusal is simulated here: there is no GPU.)"""
    from sparsify_onnx import pipeline
    mp, sp, out, _ = _convert(tmp_path, linear_chain((64, 64)), BLOCK_SPEC)
    real = ort.InferenceSession
    opened = []

    def session(model, sess_options=None, providers=None):
        graphs = providers == ["GraphProvider"]
        if graphs and (refuse == "engine") == isinstance(model, str) and refuse:
            raise RuntimeError("This session cannot use the graph capture feature as requested by the user")
        opened.append(graphs)
        return real(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", session)
    sess, ref, why = pipeline._sessions(out, _pruned_reference(mp, sp), ["GraphProvider"], 1,
                                        fallback=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    if refuse is None:
        assert why is None and opened == [True, True]
    else:
        name = "the engine" if refuse == "engine" else "the pruned dense model"
        assert why.startswith(f"onnxruntime will not capture {name}:") and opened[-2:] == [False, False]
