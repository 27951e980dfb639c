"""CPU kernel benchmark: generated ai.sparsify::SparseLinear vs onnxruntime MatMul on the same pruned weight.

    .venv/bin/python bench/cpu_kernels.py [--threads 2] [--M 1024] [--sparsity 0.8] [--block 32x32]
                                          [--shapes 256x256,256x1024,1024x256] [--epilogue none|bias_gelu]

Both run as one-node models in onnxruntime (CPUExecutionProvider, intra_op_num_threads=THREADS,
sequential execution) on the same inputs; median of many runs after warm-up. With
``--epilogue bias_gelu`` the dense side is MatMul + Add + Gelu (com.microsoft fusions allowed) and the
sparse side fuses bias and GELU into the kernel.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsify_onnx.codegen import generate  # noqa: E402
from sparsify_onnx.codegen.packing import pack  # noqa: E402
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, get_family  # noqa: E402
from sparsify_onnx.custom_ops.build import build_library  # noqa: E402
from sparsify_onnx.pattern import Pattern  # noqa: E402


def block_pruned(rng, K, N, h, w, sparsity):
    nb = (K // h) * (N // w)
    keep = np.zeros(nb, bool)
    keep[rng.permutation(nb)[: int(round(nb * (1 - sparsity)))]] = True
    mask = np.kron(keep.reshape(K // h, N // w), np.ones((h, w), bool))
    return (rng.standard_normal((K, N)) * mask).astype(np.float32)


def time_session(sess, feeds, reps, warmup):
    for _ in range(warmup):
        sess.run(None, feeds)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feeds)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), float(np.percentile(ts, 90))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--M", type=int, default=1024)
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--block", default="32x32")
    ap.add_argument("--shapes", default="256x256,256x1024,1024x256")
    ap.add_argument("--epilogue", default="none", choices=["none", "bias_gelu"])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--tile", default="", help="cpu_bcsr tile (R,NV,panels), e.g. 8,2,4")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    h, w = (int(x) for x in a.block.split("x"))
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    rng = np.random.default_rng(a.seed)
    pattern = Pattern("block", block=(h, w))
    ep = Epilogue(bias=True, activation="gelu") if a.epilogue == "bias_gelu" else Epilogue()
    tile = tuple(int(x) for x in a.tile.split(",")) if a.tile else get_family("cpu_bcsr").default_tile(
        pattern, 0, 0, "fp32", a.M)
    cases = []
    for K, N in shapes:
        W = block_pruned(rng, K, N, h, w, a.sparsity)
        pk = pack(W, pattern)
        spec = KernelSpec("linear", "cpu_bcsr", "cpu", "fp32", pattern, K, N, ep, tile, ("native",), pk.tables_hash())
        cases.append((K, N, W, pk, spec, rng.standard_normal(N).astype(np.float32)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = build_library(generate([(c[4], c[3]) for c in cases]), Path(tmp))
        print(f"built {res.path.name} in {time.perf_counter() - t0:.1f}s "
              f"({res.cache_hits} cached, {res.cache_misses} compiled)")
        print(f"threads={a.threads} M={a.M} sparsity={a.sparsity} block={h}x{w} epilogue={a.epilogue} "
              f"tile={tile}")
        print(f"{'K x N':>12} {'ORT MatMul ms':>14} {'sparse ms':>10} {'speedup':>8}  {'max rel err':>11}")
        ratios = []
        for K, N, W, pk, spec, bias in cases:
            X = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", K])
            Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", N])
            opset = [helper.make_opsetid("", 17), helper.make_opsetid("ai.sparsify", 1)]
            inits = [numpy_helper.from_array(pk.values, "values")]
            ins = ["X", "values"]
            if ep.bias:
                inits.append(numpy_helper.from_array(bias, "bias"))
                ins.append("bias")
            sp_node = helper.make_node("SparseLinear", ins, ["Y"], domain="ai.sparsify", kernel=spec.op_key())
            sp_model = helper.make_model(helper.make_graph([sp_node], "sparse", [X], [Y], inits), opset_imports=opset)
            dn_nodes = [helper.make_node("MatMul", ["X", "W"], ["Y" if not ep.bias else "mm"])]
            dn_inits = [numpy_helper.from_array(W, "W")]
            if ep.bias:
                dn_inits.append(numpy_helper.from_array(bias, "bias"))
                dn_nodes += [helper.make_node("Add", ["mm", "bias"], ["pre"]),
                             helper.make_node("Gelu", ["pre"], ["Y"], domain="com.microsoft")]
                opset.append(helper.make_opsetid("com.microsoft", 1))
            dn_model = helper.make_model(helper.make_graph(dn_nodes, "dense", [X], [Y], dn_inits),
                                         opset_imports=opset)
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.register_custom_ops_library(str(res.path))
            s_sp = ort.InferenceSession(sp_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            so2 = ort.SessionOptions()
            so2.intra_op_num_threads = a.threads
            so2.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            s_dn = ort.InferenceSession(dn_model.SerializeToString(), so2, providers=["CPUExecutionProvider"])
            x = rng.standard_normal((a.M, K)).astype(np.float32)
            feeds = {"X": x}
            y_sp = s_sp.run(None, feeds)[0]
            y_dn = s_dn.run(None, feeds)[0]
            err = float(np.abs(y_sp - y_dn).max() / max(1e-30, np.abs(y_dn).max()))
            # interleave the two to share machine noise
            d1, _ = time_session(s_dn, feeds, a.reps // 2, a.warmup)
            s1, _ = time_session(s_sp, feeds, a.reps // 2, a.warmup)
            d2, _ = time_session(s_dn, feeds, a.reps // 2, 2)
            s2, _ = time_session(s_sp, feeds, a.reps // 2, 2)
            d, s = min(d1, d2), min(s1, s2)
            ratios.append(d / s)
            print(f"{K:>5} x {N:<5} {d * 1e3:>14.3f} {s * 1e3:>10.3f} {d / s:>7.2f}x  {err:>11.2e}")
        print(f"geomean speedup {float(np.exp(np.mean(np.log(ratios)))):.2f}x, min {min(ratios):.2f}x")


if __name__ == "__main__":
    main()
