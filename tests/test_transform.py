"""Transform decisions: measured timings override the cost model; fusion and plan bookkeeping."""
import pytest

from helpers import BLOCK16_SPEC, linear_chain
from sparsify_onnx.annotate import annotate
from sparsify_onnx.graph import index_model
from sparsify_onnx.propagate import propagate
from sparsify_onnx.spec import parse_spec
from sparsify_onnx.transform import transform
from sparsify_onnx.transform.replace import TransformOptions

SPEC = BLOCK16_SPEC


FFN1 = "/encoder/layer.0/intermediate/dense/MatMul"


def _tiny_fp16_bert_ffn1(rule: str):
    """The tiny fp16 BERT of models/bert.py, propagated, with one rule (its pattern lines) on layer 0's FFN1."""
    import dataclasses
    from models.bert import BertConfig, build_bert
    cfg = dataclasses.replace(BertConfig.preset("tiny"), dtype="fp16")
    spec = f'version: 1\nrules:\n  - select: {{node: "{FFN1}"}}\n    {rule}\npropagate: false\n'
    return propagate(annotate(index_model(build_bert(cfg)), parse_spec(spec)), enabled=False)


@pytest.fixture
def propagated():
    lo = index_model(linear_chain((64, 96, 64)))
    return propagate(annotate(lo, parse_spec(SPEC)), enabled=False)


def test_measured_timings_decide(propagated):
    fast = {"/layers.0/MatMul": (1e-6, 2e-6), "/layers.1/MatMul": (3e-6, 2e-6)}
    plan = transform(propagated, TransformOptions(measured=fast, gpu_name="TestGPU"))
    by = {p.node: p for p in plan.nodes}
    assert by["/layers.0/MatMul"].action == "sparse" and "measured on TestGPU" in by["/layers.0/MatMul"].reason
    assert by["/layers.1/MatMul"].action == "dense" and "measured on TestGPU" in by["/layers.1/MatMul"].reason


def test_policy_always_and_never(propagated):
    always = transform(propagated, TransformOptions(policy="always"))
    assert [p.action for p in always.nodes] == ["sparse", "sparse"]
    assert all(p.fused for p in always.nodes)  # bias Add (and Relu) absorbed
    never = transform(propagated, TransformOptions(policy="never"))
    assert [p.action for p in never.nodes] == ["dense", "dense"]
    assert not never.kernels


def test_a_tuned_family_wins_over_the_cost_model():
    """When the tuner measured another kernel family fastest for a weight, transform uses that family and tile
    (fp16 BERT, 32x32 blocks: the cost model picks cuda_bcsr_tc; the tuner may have measured cuda_bcsr_fp32)."""
    prop = _tiny_fp16_bert_ffn1("pattern: block\n    block: [32, 32]\n    sparsity: 0.5")
    opts = dict(devices=("cpu", "cuda"), policy="always")
    spec = next(p for p in transform(prop, TransformOptions(**opts)).nodes if p.action == "sparse").kernels["cuda"]
    assert spec.family == "cuda_bcsr_tc"
    tuned = {("cuda", "cuda_bcsr_fp32", spec.tables_hash): (32,)}
    got = next(p for p in transform(prop, TransformOptions(**opts, tuned=tuned)).nodes
               if p.action == "sparse").kernels["cuda"]
    assert (got.family, got.tile) == ("cuda_bcsr_fp32", (32,))
    assert got.op_key() == spec.op_key()  # same computation, same graph
    bad = {("cuda", "cuda_csr", spec.tables_hash): (1,)}  # a family that cannot run this weight is ignored
    assert next(p for p in transform(prop, TransformOptions(**opts, tuned=bad)).nodes
                if p.action == "sparse").kernels["cuda"].family == "cuda_bcsr_tc"


def test_tuning_candidates_include_other_families_variants(monkeypatch):
    import numpy as np
    from cuda_cases import weight
    from sparsify_onnx.codegen.packing import pack
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, get_family
    from sparsify_onnx.pattern import Pattern
    from sparsify_onnx.tune import candidates
    monkeypatch.delenv("SPARSIFY_WGMMA", raising=False)
    pat = Pattern("tile", granularity=128)
    pk = pack(weight(pat, 768, 768, 0.25, np.random.default_rng(0)), pat, dtype=np.float16)
    spec = KernelSpec("linear", "cuda_tile", "cuda", "fp16", pat, 768, 768, Epilogue(),
                      tile=tuple(get_family("cuda_tile").tile_candidates(pat, 768, 768, "fp16")[0]),
                      tables_hash=pk.tables_hash())
    fams = [s.family for s, _ in candidates(spec, pk, limit=3, others=2)]
    assert fams[:3] == ["cuda_tile"] * 3 and fams.count("cuda_tile_wgmma") == 2
    assert {s.op_key() for s, _ in candidates(spec, pk, limit=3, others=2)} == {spec.op_key()}
    assert [s.family for s, _ in candidates(spec, pk, limit=3, others=0)] == ["cuda_tile"] * 3


def test_tuning_on_another_gpu_leaves_the_hopper_families_out(monkeypatch):
    """Timed on a GPU other than Hopper, the wgmma families would only run their portable fallback: tuning
    leaves them out of the variants, and a wgmma spec is tuned as its portable family (cuda_tile)."""
    import dataclasses
    import numpy as np
    from cuda_cases import weight
    from sparsify_onnx.codegen.packing import pack
    from sparsify_onnx.codegen.registry import Epilogue, KernelSpec
    from sparsify_onnx.pattern import Pattern
    from sparsify_onnx.tune import candidates
    monkeypatch.delenv("SPARSIFY_WGMMA", raising=False)
    pat = Pattern("tile", granularity=128)
    pk = pack(weight(pat, 768, 768, 0.25, np.random.default_rng(0)), pat, dtype=np.float16)
    tile = KernelSpec("linear", "cuda_tile", "cuda", "fp16", pat, 768, 768, Epilogue(), tables_hash=pk.tables_hash())
    wg = dataclasses.replace(tile, family="cuda_tile_wgmma")
    on_a100 = [s.family for s, _ in candidates(tile, pk, limit=3, others=2, capability=(8, 0))]
    assert "cuda_tile_wgmma" not in on_a100 and on_a100[:3] == ["cuda_tile"] * 3
    assert {s.family for s, _ in candidates(wg, pk, limit=3, others=2, capability=(8, 0))} <= {"cuda_tile", "cuda_tile_fp32"}
    assert candidates(wg, pk, limit=3, others=0, capability=(8, 0))[0][0].family == "cuda_tile"
    on_h200 = [s.family for s, _ in candidates(wg, pk, limit=3, others=0, capability=(9, 0))]
    assert on_h200 == ["cuda_tile_wgmma"] * 3
    assert {s.op_key() for s, _ in candidates(wg, pk, limit=3, others=2, capability=(8, 0))} == {wg.op_key()}


def test_the_plan_says_how_the_cover_runs_its_weight():
    """A CUDA node on the unstructured cover says in the manifest which form its kernel takes (the tile leaves
    FORM 0 to the cost model): a weight 2:4 in k's own groups runs in that order; a random one in the pair order,
    or in k's own order with extra steps, whichever the model prices lower. The report's kernel column shows it."""
    from sparsify_onnx.bench.report import _kernel_names
    for permute in (True, False):
        prop = _tiny_fp16_bert_ffn1("pattern: unstructured\n    sparsity: 0.9")
        node = next(p for p in transform(prop, TransformOptions(devices=("cuda",), M=4096, permute=permute,
                                                                 policy="always")).nodes if p.node == FFN1)
        k = node.to_dict()["kernels"]["cuda"]
        assert k["family"] == "cuda_cover_wgmma", k
        if permute:  # (the order conversion gives it: 2:4 in k's own groups, nothing past two)
            assert k["form"] == "k's own order", k["form"]
        else:
            assert k["form"].startswith(("k's own order;", "pair order")) and "past two" in k["form"], k["form"]
        assert k["form"] in _kernel_names(node.to_dict())["cuda"]


def test_without_a_gpu_the_dense_alternative_pays_the_epilogue_it_runs_unfused():
    """The cost model compares a CUDA node's kernel with the dense GEMM plus the element-wise passes onnxruntime
    runs for the bias and activation our kernel fuses, as the tuner does with its measured cuBLAS time (before,
    only the GEMM: on MiniLM's trained weights the model then agreed with the H200's decisions on 13 of 36 linears,
    with the passes on 34, bench/NOTES.md session 16). The CPU side stays the GEMM (measured against MLAS alone)."""
    import re
    from sparsify_onnx.codegen.registry import Epilogue
    from sparsify_onnx.transform.cost import dense_cost, dense_node_cost, epilogue_seconds
    prop = _tiny_fp16_bert_ffn1("pattern: unstructured\n    sparsity: 0.9")
    node = next(p for p in transform(prop, TransformOptions(devices=("cuda",), M=4096, permute=False)).nodes
                if p.node == FFN1)
    K, N = node.shape
    ep = Epilogue(True, "gelu", False)
    want = dense_node_cost("cuda", 4096, K, N, "fp16", ep)
    assert want == pytest.approx(dense_cost("cuda", 4096, K, N, "fp16") + epilogue_seconds(4096, N, "fp16", ep))
    assert want > dense_cost("cuda", 4096, K, N, "fp16") + 2 * 2.5e-6  # (two passes: bias, GELU)
    got = float(re.search(r"dense ([0-9.]+) us", node.reason).group(1))
    assert "cost model" in node.reason and got == pytest.approx(want * 1e6, abs=0.051), node.reason
    assert dense_node_cost("cpu", 4096, K, N, "fp32", ep) == dense_cost("cpu", 4096, K, N, "fp32")
