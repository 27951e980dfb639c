"""End to end on the CUDA execution provider (GPU hosts only).

Run on a GPU host with onnxruntime-gpu, nvcc and g++:  python -m pytest -m gpu tests/test_gpu_e2e.py
"""
from __future__ import annotations

import shutil

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
