"""tune_plan without a GPU: tiles stay the cost model's, the plan says so, op keys unchanged."""
import dataclasses

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


def test_measured_decisions_add_the_unfused_epilogue_to_dense():
    from sparsify_onnx.transform.cost import epilogue_seconds
    from sparsify_onnx.tune.plan import measured_decisions
    ep = Epilogue(bias=True, activation="gelu", residual=True)
    spec = KernelSpec(op="linear", family="cuda_bcsr_tc", device="cuda", dtype="fp16",
                      pattern=Pattern("block", block=(32, 32)), K=256, N=256, epilogue=ep, tile=(1,),
                      tables_hash="ab" * 32)
    node = NodePlan(node="n", op_type="MatMul", action="sparse", kernels={"cuda": spec}, op_key=spec.op_key())
    plan = Plan(model=None, reference=None, kernels=[], nodes=[node])
    res = [{"op_key": spec.op_key(), "tile": [2], "seconds": 5e-6, "measured": True, "dense_seconds": 4e-6}]
    measured, tiles = measured_decisions(plan, res, 4096)
    extra = epilogue_seconds(4096, 256, "fp16", ep)
    assert extra > 3 * 2.5e-6  # three passes, each a launch plus memory traffic
    assert measured["n"] == (5e-6, 4e-6 + extra)
    assert tiles[("cuda", "cuda_bcsr_tc", "ab" * 32)] == (2,)
    assert epilogue_seconds(4096, 256, "fp16", Epilogue()) == 0.0


def test_model_dtype_follows_the_weights():
    from onnx import TensorProto, helper
    from sparsify_onnx.pipeline import model_dtype
    w16 = helper.make_tensor("w", TensorProto.FLOAT16, [1], [0])
    w32 = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    g = lambda t: helper.make_model(helper.make_graph([], "g", [], [], [t]))  # noqa: E731
    assert model_dtype(g(w16)) == "fp16" and model_dtype(g(w32)) == "fp32"


def test_tuning_cache_is_keyed_by_the_kernel_code(monkeypatch):
    """A timing cached for one version of the kernel templates is not reused for another (a faster mainloop
    would otherwise keep losing to cuBLAS on old numbers)."""
    from sparsify_onnx import tune
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
    from sparsify_onnx.pattern import Pattern
    spec = KernelSpec("linear", "cuda_tile", "cuda", "fp16", Pattern("tile", granularity=128), 64, 128,
                      Epilogue(), tile=(1,), tables_hash="x")
    v = tune.code_version()
    assert len(v) == 12 and v == tune.code_version()
    k1 = tune._key("NVIDIA H200", spec, 4096)
    assert v in k1 and k1 == tune._key("NVIDIA H200", dataclasses.replace(spec, tile=(2,)), 4096)
    monkeypatch.setattr(tune, "_CODE_VERSION", "0" * 12)
    assert tune._key("NVIDIA H200", spec, 4096) != k1


def test_candidates_leave_out_tiles_the_node_cannot_take():
    """The block kernel's TMA store of Y (tile LH 8) takes no residual: a node with one is not offered those tiles
    (its geometry refuses them), a node without one is, and neither raises."""
    from sparsify_onnx.tune import candidates
    rng = np.random.default_rng(1)
    pat = Pattern("block", block=(32, 32))
    live = rng.random((768 // 32, 768 // 32)) < 0.2
    packed = pack((np.repeat(np.repeat(live, 32, 0), 32, 1) * 0.5).astype(np.float16), pat, dtype=np.float16)
    got = {}
    for res in (False, True):
        spec = KernelSpec(op="linear", family="cuda_bcsr_wgmma", device="cuda", dtype="fp16", pattern=pat, K=768,
                          N=768, epilogue=Epilogue(bias=True, residual=res), tile=(), arch=("sm_90",),
                          tables_hash=packed.tables_hash())
        got[res] = [s.tile for s, _ in candidates(spec, packed, limit=12, others=0, capability=(9, 0))]
    assert any(len(t) == 7 and t[5] & 8 for t in got[False])
    assert got[True] and not any(len(t) == 7 and t[5] & 8 for t in got[True])
