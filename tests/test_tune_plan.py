"""tune_plan without a GPU: tiles stay the cost model's, the plan says so, op keys unchanged."""
import numpy as np

from sparsify_onnx.codegen.packing import pack
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, families
from sparsify_onnx.pattern import Pattern
from sparsify_onnx.transform import NodePlan, Plan
from sparsify_onnx.tune.plan import tune_plan


def test_tune_plan_without_gpu_keeps_cost_model_tiles():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((64, 96)).astype(np.float16)
    W[:32, :32] = 0
    pat = Pattern("block", block=(32, 32))
    packed = pack(W, pat, dtype=np.float16)
    fam = next(f for f in families("cuda") if f.supports(pat, 64, 96, "fp16") is None)
    spec = KernelSpec(op="linear", family=fam.name, device="cuda", dtype="fp16", pattern=pat, K=64, N=96,
                      epilogue=Epilogue(bias=True), tile=tuple(fam.default_tile(pat, 64, 96, "fp16", 256)),
                      arch=("sm_90",), tables_hash=packed.tables_hash())
    node = NodePlan(node="n", op_type="MatMul", action="sparse", kernels={"cuda": spec}, op_key=spec.op_key())
    plan = Plan(model=None, reference=None, kernels=[(spec, packed)], nodes=[node], devices=("cpu", "cuda"))
    tuned, results = tune_plan(plan, 256, gpu=False)
    assert len(results) == 1 and results[0]["measured"] is False
    assert tuned.nodes[0].kernels["cuda"].op_key() == spec.op_key()
    assert "no GPU" in tuned.decided_by
    assert tuned.kernels[0][0].tile in [tuple(t) for t in fam.tile_candidates(pat, 64, 96, "fp16")]
