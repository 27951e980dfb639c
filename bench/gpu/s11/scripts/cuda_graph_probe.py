"""Session 11 probe: the block80 BERT engine and the dense model, timed in onnxruntime with and without CUDA graphs
(CUDA EP option enable_cuda_graph, inputs and outputs bound on the GPU), to see how much of the end-to-end time is
host-side work per op. Not product code.
usage: python3 cuda_graph_probe.py ENGINE_DIR DENSE_MODEL.onnx   (GPU host, onnxruntime-gpu installed)"""
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

from sparsify_onnx.engine.load import session_options

engine, dense = sys.argv[1], sys.argv[2]
B, S = 32, 128
feeds = {"input_ids": np.random.default_rng(0).integers(0, 1000, (B, S), dtype=np.int64),
         "attention_mask": np.ones((B, S), dtype=np.int64)}


def session(path, so, graph):
    opts = {"enable_cuda_graph": "1"} if graph else {}
    return ort.InferenceSession(path, sess_options=so, providers=[("CUDAExecutionProvider", opts), "CPUExecutionProvider"])


def timed(sess, rounds=50):
    io = sess.io_binding()
    for k, v in feeds.items():
        io.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
    for o in sess.get_outputs():
        io.bind_output(o.name, "cuda", 0)
    for _ in range(5):  # a regular run, the capture, replays
        sess.run_with_iobinding(io)
    io.synchronize_outputs()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        sess.run_with_iobinding(io)
        io.synchronize_outputs()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, io.copy_outputs_to_cpu()[0]


res = {}
for graph in (False, True):
    for name, path, so in (("dense", dense, ort.SessionOptions()), ("engine", engine + "/model.onnx", session_options(engine))):
        try:
            ms, out = timed(session(path, so, graph))
            res[(name, graph)] = (ms, out)
            print(f"{name:7s} cuda_graph={graph!s:5s} median {ms:.3f} ms", flush=True)
        except Exception as e:  # report and go on
            print(f"{name:7s} cuda_graph={graph!s:5s} FAILED: {str(e)[:300]}", flush=True)
for graph in (False, True):
    if ("dense", graph) in res and ("engine", graph) in res:
        d, e = res[("dense", graph)], res[("engine", graph)]
        ref = d[1].astype(np.float64)
        err = np.linalg.norm(e[1].astype(np.float64) - ref) / np.linalg.norm(ref)
        print(f"cuda_graph={graph}: engine {e[0]:.3f} vs dense {d[0]:.3f} ms = {d[0] / e[0]:.2f}x "
              f"(outputs differ by {err:.1e}: the engine is pruned, the dense model is not)")
if ("engine", False) in res and ("engine", True) in res:  # graph replay gives the same result as plain runs
    a, b = (res[("engine", g)][1].astype(np.float64) for g in (False, True))
    print(f"engine with graphs vs without: max abs difference {np.abs(a - b).max():.1e}")
    print(f"dense with graphs vs without: max abs difference "
          f"{np.abs(res[('dense', False)][1].astype(np.float64) - res[('dense', True)][1].astype(np.float64)).max():.1e}")

