"""Which execution provider ran each SparseLinear node (onnxruntime profiling), and timing per op type.

    python bench/gpu/placement.py ENGINE_DIR input_ids=32x128 attention_mask=32x128
"""
import json
import sys
from collections import Counter, defaultdict

import onnxruntime as ort

from sparsify_onnx.bench.latency import make_inputs, parse_input_shapes
from sparsify_onnx.engine import session_options

eng = sys.argv[1]
shapes = parse_input_shapes(sys.argv[2:])
so = session_options(eng)
so.enable_profiling = True
so.profile_file_prefix = "/tmp/sparsify_profile"
sess = ort.InferenceSession(f"{eng}/model.onnx", so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
import onnx
feeds = make_inputs(onnx.load(f"{eng}/model.onnx", load_external_data=False), shapes, seed=0)
for _ in range(20):
    sess.run(None, feeds)
prof = sess.end_profiling()
events = json.load(open(prof))
where = Counter()
dur = defaultdict(float)
for e in events:
    a = e.get("args", {})
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        where[(a.get("op_name"), a.get("provider"))] += 1
        dur[a.get("op_name")] += e.get("dur", 0)
print("node placement (op, provider): count over 20 runs")
for k, v in sorted(where.items()):
    print(f"  {k}: {v}")
print("host-measured kernel time per op type (us per run):")
for k, v in sorted(dur.items(), key=lambda kv: -kv[1])[:12]:
    print(f"  {k:28s} {v / 20:10.1f}")
