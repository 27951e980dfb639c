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
