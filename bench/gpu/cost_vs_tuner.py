"""Compare the cost model's decisions (no GPU) with a GPU conversion's measured ones, node by node.

    python bench/gpu/cost_vs_tuner.py MODEL.onnx SPEC.yaml ENGINE/manifest.json [NAME=2x128 ...]

Plans MODEL for CUDA with the transform stage alone (M from the input shapes, K orders as convert makes them)
and prints, for every node the manifest measured, both decisions and their reasons, then how many agree
(bench/NOTES.md session 16: MiniLM, 13 of 36 before the dense side counted the unfused epilogue, 34 after)."""
import json
import sys

from sparsify_onnx.annotate import annotate
from sparsify_onnx.bench.latency import make_inputs
from sparsify_onnx.graph import has_symbolic_inputs, load_model
from sparsify_onnx.pipeline import rows_of
from sparsify_onnx.propagate import propagate
from sparsify_onnx.spec import load_spec
from sparsify_onnx.transform import transform
from sparsify_onnx.transform.replace import TransformOptions

model, spec_path, manifest = sys.argv[1:4]
shapes = {a.split("=")[0]: tuple(int(x) for x in a.split("=")[1].split("x")) for a in sys.argv[4:]}
loaded = load_model(model)
spec = load_spec(spec_path)
feeds = make_inputs(loaded.model, shapes or None, seed=0)
prop = propagate(annotate(loaded, spec), enabled=spec.propagate)
opts = TransformOptions(devices=("cuda",), M=rows_of(shapes, feeds), cuda_arch=("sm_90",), compact=spec.propagate,
                        progress=lambda *a: None,
                        input_dims={k: v.shape for k, v in feeds.items()} if has_symbolic_inputs(loaded.model)
                        else None)
plan = transform(prop, opts)
meas = {p["node"]: p for p in json.load(open(manifest))["plan"]}
agree = n = 0
for p in plan.nodes:
    m = meas.get(p.node)
    if m is None or "measured" not in m["reason"] and m["action"] != "sparse":
        continue
    n += 1
    agree += p.action == m["action"]
    print(f"{p.node[-44:]:44s} model {p.action:6s} {p.reason[:64]:64s} | measured {m['action']:6s} {m['reason'][:64]}")
print(f"the cost model agrees with the measured decisions on {agree} of {n} nodes")
