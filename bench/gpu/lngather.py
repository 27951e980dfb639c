"""LayerNorm on the CUDA execution provider, fp16 rows of H = 768 (BERT-base) at M = 4096 (32 x 128 tokens):
onnxruntime's LayerNormalization alone, LayerNormalization + Gather (the K order as plain ONNX), and the fused
ai.sparsify::LayerNormGather. Each model chains CHAIN ops (so one run's launch cost is spread over them), timed
interleaved under onnxruntime's CUDA graphs (bench.latency.compare); per-op time = run time / CHAIN.

    PYTHONPATH=/tmp/site:$PWD SPARSIFY_ORT_INCLUDE=$PWD/.devbuild/ort-include python3 bench/gpu/lngather.py [M] [H]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sparsify_onnx.bench.latency import CUDA_GRAPH_PROVIDERS, compare  # noqa: E402
from sparsify_onnx.transform.lngather import fuse_layernorm_gather  # noqa: E402

CHAIN = 16


def chain(M: int, H: int, gather: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "X"
    for i in range(CHAIN):
        inits += [numpy_helper.from_array((1 + 0.1 * rng.standard_normal(H)).astype(np.float16), f"g{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(H)).astype(np.float16), f"b{i}")]
        y = f"y{i}"
        nodes.append(helper.make_node("LayerNormalization", [x, f"g{i}", f"b{i}"], [y + "n" if gather else y],
                                      name=f"ln{i}", axis=-1))
        if gather:
            inits.append(numpy_helper.from_array(rng.permutation(H).astype(np.int64), f"i{i}"))
            nodes.append(helper.make_node("Gather", [y + "n", f"i{i}"], [y], name=f"ln{i}/Order", axis=-1))
        x = y
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT16, [M, H])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT16, [M, H])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def library(tmp: Path) -> Path:
    """A library with one small CUDA kernel (the op layer, LayerNormGather's kernel included, comes with any)."""
    from sparsify_onnx.codegen import generate
    from sparsify_onnx.codegen.packing import pack
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
    from sparsify_onnx.custom_ops.build import build_library
    from sparsify_onnx.pattern import Pattern
    W = (np.random.default_rng(0).random((64, 64)) < 0.1).astype(np.float32)
    pat = Pattern("unstructured")
    pk = pack(W, pat)
    spec = KernelSpec("linear", "cuda_csr", "cuda", "fp32", pat, 64, 64, Epilogue(), arch=("sm_90",),
                      tables_hash=pk.tables_hash())
    return build_library(generate([(spec, pk)]), tmp, cuda_arch=("sm_90",)).path


def main(M: int = 4096, H: int = 768) -> None:
    tmp = Path(tempfile.mkdtemp())
    lib = library(tmp)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    plain, gathered = chain(M, H, False), chain(M, H, True)
    fused, names = fuse_layernorm_gather(gathered)
    assert len(names) == CHAIN
    systems = {name: ort.InferenceSession(m.SerializeToString(), so, providers=list(CUDA_GRAPH_PROVIDERS))
               for name, m in (("LayerNormalization", plain), ("LayerNormalization+Gather", gathered),
                               ("LayerNormGather", fused))}
    X = np.random.default_rng(1).standard_normal((M, H)).astype(np.float16)
    r = compare(systems, {"X": X}, baseline="LayerNormalization", warmup=20, repeat=200, check_outputs=False)
    plain_run = {name: ort.InferenceSession(m.SerializeToString(), so, providers=["CUDAExecutionProvider"])
                 for name, m in (("gathered", gathered), ("fused", fused))}  # (a CUDA graph session runs bound only)
    ref = plain_run["gathered"].run(None, {"X": X})[0].astype(np.float32)
    got = plain_run["fused"].run(None, {"X": X})[0].astype(np.float32)
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"M={M} H={H} fp16, {CHAIN} ops per run, CUDA graphs; fused vs LN+Gather max rel error {err:.2e}")
    for name, s in r["systems"].items():
        print(f"  {name:28s} {s['median_ms'] * 1e3 / CHAIN:7.2f} us per op (median run {s['median_ms']:.4f} ms)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
