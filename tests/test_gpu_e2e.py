"""End to end on the CUDA execution provider (GPU hosts only).

Run on a GPU host with onnxruntime-gpu, nvcc and g++:  python -m pytest -m gpu tests/test_gpu_e2e.py
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers() or not shutil.which("nvcc"),
    reason="needs onnxruntime-gpu and nvcc")]


@pytest.mark.parametrize("dtype,tol", [("fp16", 1e-2), ("fp32", 1e-4)])
def test_bert_engine_on_cuda_matches_pruned_model(tmp_path, dtype, tol):
    from models.bert import BertConfig, build_bert, save_model
    from sparsify_onnx import load_engine
    from sparsify_onnx.annotate import annotate
    from sparsify_onnx.bench.latency import make_inputs
    from sparsify_onnx.engine import verify
    from sparsify_onnx.engine.verify import exact_providers
    from sparsify_onnx.graph import load_model
    from sparsify_onnx.pipeline import ConvertOptions, convert
    from sparsify_onnx.spec import load_spec

    mp = tmp_path / "bert.onnx"
    save_model(build_bert(BertConfig.preset("tiny", dtype=dtype)), mp)
    sp = tmp_path / "spec.yaml"
    sp.write_text("version: 1\nrules:\n  - select: {node: \"/encoder/layer.*/*/dense/MatMul\"}\n"
                  "    pattern: block\n    block: [32, 32]\n    sparsity: 0.75\n")
    out = tmp_path / "engine"
    convert(mp, sp, out, ConvertOptions(device="cuda", policy="always", bench=False, verify=False, quiet=True,
                                        cuda_arch=("sm_90",), input_shapes={"input_ids": (4, 64),
                                                                            "attention_mask": (4, 64)}))
    providers = exact_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], dtype)
    sess = load_engine(out, providers=providers)
    assert sess.get_providers()[0] == "CUDAExecutionProvider"
    ref = annotate(load_model(mp), load_spec(sp)).loaded.model
    feeds = make_inputs(ref, {"input_ids": (4, 64), "attention_mask": (4, 64)}, seed=3)
    v = verify(sess, ref, feeds, dtype=dtype, providers=providers)
    assert v.passed, v.outputs
    out0 = sess.run(None, feeds)[0]
    assert np.isfinite(out0.astype(np.float32)).all()


@pytest.mark.parametrize("traced", [False, True])
def test_reordered_k_on_cuda_matches_pruned_model(tmp_path, traced):
    """Every linear unstructured at 90%, converted for CUDA: FFN2's K is reordered with FFN1's columns and bias, the
    attention output's per head with V's columns and bias, Q, K, V and FFN1 with the residual stream, each LayerNorm
    writing its rows in the next one's order (LayerNormGather; manifest); those nodes run the cover in natural
    order; the engine on the CUDA EP matches the pruned dense model (whose order is the model's own). `traced`: the
    graph torch.onnx's tracer writes before opset 17 (decomposed LayerNorms, reshape targets from Shape nodes)."""
    import json

    from models.bert import BertConfig, build_bert, save_model
    from sparsify_onnx.pipeline import ConvertOptions, convert

    mp = tmp_path / "bert.onnx"
    save_model(build_bert(BertConfig.preset("tiny", dtype="fp16"), seed=2, dynamic_shapes=traced,
                          layer_norm="decomposed" if traced else "op"), mp)
    sp = Path(__file__).parent.parent / "models" / "specs" / "bert_unstructured90.yaml"
    out = tmp_path / "engine"
    report = convert(mp, sp, out, ConvertOptions(device="cuda", policy="always", bench=False, quiet=True,
                                                 cuda_arch=("sm_90",), tune=False,
                                                 input_shapes={"input_ids": (4, 64), "attention_mask": (4, 64)}))
    assert report["verification"]["passed"], report["verification"]
    manifest = json.loads((out / "manifest.json").read_text())
    reordered = {n for g in manifest["permutation"]["groups"] for n in g["nodes"]}
    assert reordered == {f"/encoder/layer.{i}/{p}/MatMul" for i in range(2) for p in (
        "output/dense", "attention/output/dense", "intermediate/dense", "attention/self/query", "attention/self/key",
        "attention/self/value")}
    assert [g["fused"] for g in manifest["permutation"]["gathers"]] == [True] * 5
    for n in manifest["plan"]:  # (the others take whichever form costs less: at K = 64 often the natural one too)
        if n["node"] in reordered:
            src = (out / "src" / f"{n['kernels']['cuda']['name']}.cu").read_text()
            assert n["action"] == "sparse" and "COVER, natural order" in src, n["node"]


def test_cuda_graph_report_of_a_traced_export(tmp_path):
    """--cuda-graph on a model as torch.onnx's tracer writes it: onnxruntime keeps its shape arithmetic on the CPU
    and will not capture it; convert then times both models without graphs and the report says why."""
    from models.bert import BertConfig, build_bert, save_model
    from sparsify_onnx.bench.report import render_markdown
    from sparsify_onnx.pipeline import ConvertOptions, convert

    mp = tmp_path / "bert.onnx"
    save_model(build_bert(BertConfig.preset("tiny", dtype="fp16"), seed=2, dynamic_shapes=True,
                          layer_norm="decomposed"), mp)
    sp = Path(__file__).parent.parent / "models" / "specs" / "bert_hf_unstructured90.yaml"
    report = convert(mp, sp, tmp_path / "engine", ConvertOptions(
        device="cuda", bench=True, cuda_graph=True, quiet=True, cuda_arch=("sm_90",), tune=False,
        input_shapes={"input_ids": (4, 64), "attention_mask": (4, 64)}))
    lat = report["latency"]
    assert report["verification"]["passed"] and lat["systems"]["engine"]["median_ms"] > 0
    assert lat["cuda_graph"] != bool(lat.get("cuda_graph_refused"))
    # nothing timed in tuning (tune=False): no per-node times, rather than onnxruntime's CPU-side launch times
    assert report["meta"]["per_node_times"].startswith("none")
    assert all(n["time_engine_us"] is None for n in report["nodes"])
    if lat.get("cuda_graph_refused"):
        assert "Not under CUDA graphs as asked" in render_markdown(report)


@pytest.mark.parametrize("dtype,H", [("fp16", 768), ("fp16", 1000), ("fp32", 512), ("fp16", 3072), ("fp32", 2000),
                                     ("fp16", 8200), ("fp16", 4100), ("fp32", 7)])
def test_layernorm_gather_on_cuda(tmp_path, dtype, H):
    """ai.sparsify::LayerNormGather on the CUDA EP against numpy's LayerNorm and gather: the warp-per-row register
    kernel (rows of up to 4 x 32 x 16 bytes: fp16 768, fp16 1000 with a part chunk, fp32 512), the block-per-row
    one (up to 8 x 128 x 16 bytes: fp16 3072, fp32 2000 with a part chunk), the loop kernel with 16-byte loads (fp16
    8200, whose four warps need 128 KB of shared memory) and with scalar ones (H = 4100, 7); rows of one token and
    300."""
    import onnx
    from onnx import numpy_helper
    from test_lngather import _model

    from sparsify_onnx.transform.lngather import fuse_layernorm_gather
    import sys
    sys.path.insert(0, str(Path(__file__).parent.parent / "bench" / "gpu"))
    from lngather import library

    m = _model(H)
    if dtype == "fp16":
        for t in m.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
        for v in list(m.graph.input) + list(m.graph.output):
            v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    fused, names = fuse_layernorm_gather(m)
    assert names == ["ln/Order"]
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(library(tmp_path / "lib")))
    sess = ort.InferenceSession(fused.SerializeToString(), so, providers=["CUDAExecutionProvider"])
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    npdt = np.float16 if dtype == "fp16" else np.float32
    for rows in (1, 300):
        X = (np.random.default_rng(rows).standard_normal((1, rows, H)) * 2 + 0.5).astype(npdt)
        x = X.astype(np.float64)
        n = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3) * w["scale"] + w["bias"]
        want = n[..., w["index"].astype(np.int64)]
        got = sess.run(None, {"X": X})[0].astype(np.float32)
        assert np.abs(got - want).max() <= (1e-2 if dtype == "fp16" else 1e-5) * np.abs(want).max(), (rows, H)


def _one_node(tmp_path, family):
    """A one-node SparseLinear model's library for ``family`` (K = N = 256), a session maker (values scale, GPU) and
    a check of a session's output against numpy."""
    from helpers import sparse_linear_model
    from onnx import TensorProto

    from sparsify_onnx.codegen import generate
    from sparsify_onnx.codegen.packing import pack
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
    from sparsify_onnx.custom_ops.build import build_library
    from sparsify_onnx.pattern import Pattern

    K = N = 256
    rng = np.random.default_rng(7)
    if family == "cuda_cover_wgmma":
        pat = Pattern("unstructured")
        mask = rng.random((K, N)) < 0.1
    else:
        pat = Pattern("nm", n=2, m=4)
        mask = (rng.random((K // 4, 4, N)).argsort(axis=1) < 2).reshape(K, N)
    W = (rng.standard_normal((K, N)) * mask).astype(np.float16).astype(np.float32)
    pk = pack(W, pat, dtype=np.float16)
    spec = KernelSpec("linear", family, "cuda", "fp16", pat, K, N, Epilogue(), arch=("sm_90",),
                      tables_hash=pk.tables_hash())
    lib = build_library(generate([(spec, pk)]), tmp_path / "lib", cuda_arch=("sm_90",)).path

    def session(scale, device_id=0):
        m = sparse_linear_model(spec, (pk.values * scale).astype(np.float16), TensorProto.FLOAT16)
        so = ort.SessionOptions()
        so.register_custom_ops_library(str(lib))
        return ort.InferenceSession(m.SerializeToString(), so,
                                    providers=[("CUDAExecutionProvider", {"device_id": device_id})])

    x = rng.standard_normal((64, K)).astype(np.float16)
    want = x.astype(np.float64) @ W

    def check(sess, scale):
        y = sess.run(None, {"X": x})[0].astype(np.float64)
        assert np.linalg.norm(y - scale * want) / np.linalg.norm(scale * want) < 1e-2, scale

    return session, check


@pytest.mark.parametrize("family", ["cuda_cover_wgmma", "cuda_nm_sparselt"])
def test_sessions_keep_their_own_derived_weights(tmp_path, family):
    """Kernels that derive buffers from the weight (the cover, cuSPARSELt's compressed W) keep one per session's
    values: two sessions with different weights on one library each get their own results, and a session made
    after both are gone (its weight likely at a freed address) gets its own, not a stale copy (the op layer
    releases a kernel's buffers with its session)."""
    import gc

    session, check = _one_node(tmp_path, family)
    s1, s2 = session(1.0), session(2.0)
    check(s1, 1.0)
    check(s2, 2.0)
    check(s1, 1.0)
    del s1, s2
    gc.collect()
    for scale in (-0.5, 3.0):
        s = session(scale)
        check(s, scale)
        del s
        gc.collect()


def _gpu_count() -> int:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    r = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines()) if r.returncode == 0 else 0


@pytest.mark.parametrize("family", ["cuda_nm_sparselt", "cuda_nm_wgmma", "cuda_cover_wgmma"])
def test_sessions_on_two_gpus(tmp_path, family):
    """Sessions of one process on two GPUs, one library: each runs the node with the state its kernel keeps per
    GPU (cuSPARSELt's handle, offset table and plans; the wgmma metadata; the cover) and gets its own results
    (before, a cuSPARSELt node refused the second GPU with code 6)."""
    if _gpu_count() < 2:
        pytest.skip("needs two GPUs")
    session, check = _one_node(tmp_path, family)
    s0, s1 = session(1.0, 0), session(2.0, 1)
    check(s0, 1.0)
    check(s1, 2.0)
    check(s0, 1.0)
    check(s1, 2.0)
