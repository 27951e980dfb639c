"""Which nodes onnxruntime places on the CPU execution provider (why a model cannot run under CUDA graphs).

    python bench/gpu/cpu_nodes.py MODEL.onnx [ENGINE_DIR] input_ids=4x64 attention_mask=4x64
"""
import json
import sys
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort

from sparsify_onnx.bench.latency import make_inputs, parse_input_shapes
from sparsify_onnx.engine import session_options

args = [a for a in sys.argv[1:] if "=" not in a]
shapes = parse_input_shapes([a for a in sys.argv[1:] if "=" in a])
for path in args:
    p = Path(path)
    so = session_options(p) if p.is_dir() else ort.SessionOptions()
    model = str(p / "model.onnx") if p.is_dir() else str(p)
    so.enable_profiling = True
    so.profile_file_prefix = "/tmp/cpu_nodes"
    sess = ort.InferenceSession(model, so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    feeds = make_inputs(onnx.load(model, load_external_data=False), shapes, seed=0)
    sess.run(None, feeds)
    events = json.load(open(sess.end_profiling()))
    cpu = Counter(e["args"].get("op_name") for e in events if e.get("cat") == "Node" and
                  e["name"].endswith("_kernel_time") and e["args"].get("provider") == "CPUExecutionProvider")
    print(f"{path}: on the CPU: {dict(cpu) or 'nothing'}")
