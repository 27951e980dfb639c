"""CPU kernel families through a real onnxruntime session, against a float64 numpy reference.

One library holds every kernel below (session-scoped fixture, compile cache in a temporary
directory); each case runs at M=1, a small M, M=1000+ and with 3-D input.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsify_onnx.codegen import BANNER, generate  # noqa: E402
from sparsify_onnx.codegen.packing import pack  # noqa: E402
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, families, get_family  # noqa: E402
from sparsify_onnx.custom_ops.build import build_library  # noqa: E402
from sparsify_onnx.custom_ops.cache import CompileCache  # noqa: E402
from sparsify_onnx.pattern import Pattern  # noqa: E402

E = Epilogue
CASES = [
    # family, pattern, K, N, epilogue
    ("cpu_bcsr", Pattern("block", block=(16, 16)), 70, 45, E()),
    ("cpu_bcsr", Pattern("block", block=(32, 32)), 64, 96, E(True, "gelu", True)),
    ("cpu_bcsr", Pattern("block", block=(8, 4)), 33, 50, E(True, "relu", False)),
    ("cpu_bcsr", Pattern("block", block=(4, 8)), 100, 40, E(False, "gelu_tanh", True)),
    ("cpu_bcsr", Pattern("block", block=(16, 1)), 40, 13, E(True, "none", False)),  # narrow: column-wise path
    ("cpu_csr", Pattern("unstructured"), 70, 45, E()),
    ("cpu_csr", Pattern("unstructured"), 64, 33, E(True, "gelu", True)),
    ("cpu_csr", Pattern("unstructured"), 129, 20, E(True, "relu", False)),
    ("cpu_nm", Pattern("nm", n=2, m=4), 70, 45, E()),
    ("cpu_nm", Pattern("nm", n=1, m=8), 64, 50, E(True, "gelu_tanh", True)),
    ("cpu_nm", Pattern("nm", n=4, m=16), 48, 40, E(False, "relu", False)),
    ("cpu_nm", Pattern("nm", n=2, m=32), 70, 20, E(True, "gelu", False)),
    ("cpu_tile", Pattern("tile", granularity=16), 70, 45, E()),
    ("cpu_tile", Pattern("tile", granularity=8), 64, 33, E(True, "gelu", True)),
    ("cpu_tile", Pattern("tile", granularity=32), 100, 70, E(False, "relu", True)),
    ("cpu_tile", Pattern("tile", granularity=3), 20, 10, E(True, "none", True)),
    ("cpu_bcsr", Pattern("block", block=(3, 4)), 50, 30, E(False, "gelu", True)),  # narrow, K tail
]


def pruned_weight(rng, pattern: Pattern, K: int, N: int) -> np.ndarray:
    W = (rng.standard_normal((K, N)) + np.where(rng.random((K, N)) < 0.5, 1.0, -1.0)).astype(np.float32)
    if pattern.kind == "block":
        h, w = pattern.block
        keep = rng.random((-(-K // h), -(-N // w))) < 0.4
        keep.flat[0] = True
        mask = np.kron(keep, np.ones((h, w), bool))[:K, :N]
    elif pattern.kind == "unstructured":
        mask = rng.random((K, N)) < 0.25
    elif pattern.kind == "tile":
        G = pattern.granularity
        mask = np.repeat(rng.random((K, -(-N // G))) < 0.3, G, axis=1)[:, :N]
    else:
        n, m = pattern.n, pattern.m
        Kp = -(-K // m) * m
        mask = np.zeros((Kp // m, m, N), bool)
        for g in range(Kp // m):
            for j in range(N):
                mask[g, rng.permutation(m)[:rng.integers(1, n + 1)], j] = True
        mask = mask.reshape(Kp, N)[:K]
    return W * mask


def reference(x, W, ep: Epilogue, bias, res):
    z = x.astype(np.float64) @ W.astype(np.float64)
    if ep.bias:
        z = z + bias
    if ep.activation == "relu":
        z = np.maximum(z, 0)
    elif ep.activation == "gelu":
        z = 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    elif ep.activation == "gelu_tanh":
        z = 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    if ep.residual:
        z = z + res
    return z


class Case:
    def __init__(self, i, family, pattern, K, N, ep):
        rng = np.random.default_rng(100 + i)
        self.family, self.pattern, self.K, self.N, self.ep = family, pattern, K, N, ep
        self.W = pruned_weight(rng, pattern, K, N)
        self.packed = pack(self.W, pattern)
        fam = get_family(family)
        tile = fam.default_tile(pattern, K, N, "fp32", 1024)
        self.spec = KernelSpec("linear", family, "cpu", "fp32", pattern, K, N, ep, tuple(tile), ("native",),
                               self.packed.tables_hash())
        self.bias = rng.standard_normal(N).astype(np.float32)

    def id(self):
        return f"{self.family}-{self.pattern.short()}-{self.K}x{self.N}-{self.ep.short()}"

    def model(self, rank=2, k_dim=None):
        dims = ["M"] if rank == 2 else ["B", "S"]
        X = helper.make_tensor_value_info("X", TensorProto.FLOAT, dims + [k_dim or self.K])
        Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims + [self.N])
        inputs, ins = [X], ["X", "values"]
        inits = [numpy_helper.from_array(self.packed.values, "values")]
        if self.ep.bias or self.ep.residual:
            inits.append(numpy_helper.from_array(self.bias, "bias"))
            ins.append("bias" if self.ep.bias else "")
        if self.ep.residual:
            inputs.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, dims + [self.N]))
            ins.append("R")
        node = helper.make_node("SparseLinear", ins, ["Y"], domain="ai.sparsify", kernel=self.spec.op_key())
        g = helper.make_graph([node], "one", inputs, [Y], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.sparsify", 1)])


ALL = [Case(i, *c) for i, c in enumerate(CASES)]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """A compile cache private to this test session (the op layer compiles once)."""
    return CompileCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def cpu_library(tmp_path_factory, shared_cache):
    """One libsparsify_ops.so with every case's kernel (built once per test session)."""
    out = tmp_path_factory.mktemp("cpu_lib")
    sources = generate([(c.spec, c.packed) for c in ALL])
    res = build_library(sources, out, cache=shared_cache, jobs=2)
    return res, sources


def session(lib, model, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.register_custom_ops_library(str(lib))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", ALL, ids=[c.id() for c in ALL])
def test_kernel_matches_numpy(cpu_library, case):
    res, _ = cpu_library
    sess = session(res.path, case.model())
    rng = np.random.default_rng(7)
    for M in (1, 5, 100, 1030):
        x = rng.standard_normal((M, case.K)).astype(np.float32)
        feeds = {"X": x}
        r = rng.standard_normal((M, case.N)).astype(np.float32)
        if case.ep.residual:
            feeds["R"] = r
        y = sess.run(None, feeds)[0]
        ref = reference(x, case.W, case.ep, case.bias, r)
        assert y.shape == (M, case.N)
        err = np.abs(y - ref).max() / max(1.0, np.abs(ref).max())
        assert err < 2e-5, f"M={M}: max rel err {err:.3g}"


@pytest.mark.parametrize("case", [ALL[1], ALL[6], ALL[9], ALL[13]], ids=lambda c: c.id())
def test_kernel_3d_input_and_single_thread(cpu_library, case):
    res, _ = cpu_library
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 37, case.K)).astype(np.float32)
    r = rng.standard_normal((2, 37, case.N)).astype(np.float32)
    feeds = {"X": x, "R": r} if case.ep.residual else {"X": x}
    ref = reference(x.reshape(-1, case.K), case.W, case.ep, case.bias, r.reshape(-1, case.N)).reshape(2, 37, case.N)
    for threads in (1, 2):
        y = session(res.path, case.model(rank=3), threads).run(None, feeds)[0]
        assert y.shape == (2, 37, case.N)
        np.testing.assert_allclose(y, ref, rtol=2e-5, atol=2e-5 * max(1.0, np.abs(ref).max()))


def test_empty_batch(cpu_library):
    res, _ = cpu_library
    c = ALL[0]
    y = session(res.path, c.model()).run(None, {"X": np.zeros((0, c.K), np.float32)})[0]
    assert y.shape == (0, c.N)


def test_wrong_k_is_a_clear_error(cpu_library):
    res, _ = cpu_library
    c = ALL[0]
    sess = session(res.path, c.model(k_dim="K"))  # symbolic, so only the op can catch it
    with pytest.raises(Exception, match=r"last dimension must be K=70"):
        sess.run(None, {"X": np.ones((3, c.K + 1), np.float32)})


def test_wrong_values_count_is_a_clear_error(cpu_library):
    res, _ = cpu_library
    c = ALL[0]
    m = c.model()
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones(7, np.float32), "values"))
    sess = session(res.path, m)
    with pytest.raises(Exception, match=r"values has 7 elements"):
        sess.run(None, {"X": np.ones((3, c.K), np.float32)})


def test_unknown_kernel_is_named(cpu_library):
    res, _ = cpu_library
    c = ALL[0]
    m = c.model()
    m.graph.node[0].attribute[0].s = b"sp_linear_no_such_kernel"
    with pytest.raises(Exception, match="sp_linear_no_such_kernel"):
        session(res.path, m).run(None, {"X": np.ones((3, c.K), np.float32)})


def test_missing_bias_is_a_clear_error(cpu_library):
    res, _ = cpu_library
    c = ALL[2]  # has a bias
    m = c.model()
    del m.graph.node[0].input[2:]
    with pytest.raises(Exception, match="bias"):
        session(res.path, m).run(None, {"X": np.ones((3, c.K), np.float32)})


def test_generated_sources_are_specialised(cpu_library):
    _, sources = cpu_library
    assert sources[-1].relpath == "registry.cc"
    for s in sources:
        assert BANNER in s.text.splitlines()[0]
        assert "spec:" in s.text.splitlines()[1]
    bcsr = next(s for s in sources if s.kernel == ALL[1].spec.procedural_name())
    # pattern baked in: constants and the index table, values only at run time
    assert "constexpr int64_t K = 64;" in bcsr.text and "constexpr int64_t N = 96;" in bcsr.text
    assert "static const int32_t row_idx[" in bcsr.text
    assert ", ".join(str(v) for v in ALL[1].packed.tables["row_idx"][:3]) in bcsr.text
    assert f"{ALL[1].spec.procedural_name()}_cpu" in bcsr.text
    reg = sources[-1].text
    for c in ALL:
        assert f'"{c.spec.op_key()}"' in reg and f"{c.spec.procedural_name()}_cpu" in reg


def test_families_registered():
    names = {f.name for f in families("cpu")}
    assert {"cpu_bcsr", "cpu_csr", "cpu_nm", "cpu_tile"} <= names
    for f in families("cpu"):
        assert f.device == "cpu"
    bcsr = get_family("cpu_bcsr")
    assert bcsr.supports(Pattern("block", block=(32, 32)), 64, 64, "fp32") is None
    assert bcsr.supports(Pattern("unstructured"), 64, 64, "fp32")
    assert bcsr.supports(Pattern("block", block=(32, 32)), 64, 64, "fp16")
    c = ALL[1]
    assert 0 < bcsr.cost(c.spec, c.packed, 1024) < bcsr.cost(c.spec, c.packed, 8192)
    assert bcsr.tile_candidates(c.pattern, c.K, c.N, "fp32")
    # narrow blocks (column-wise path) and 4-wide blocks cost more for the same stored work
    for blk in ((32, 1), (16, 4)):
        narrow = KernelSpec("linear", "cpu_bcsr", "cpu", "fp32", Pattern("block", block=blk), c.K, c.N, c.ep, (),
                            ("native",), "x")
        assert bcsr.cost(narrow, c.packed, 1024) > 1.5 * bcsr.cost(c.spec, c.packed, 1024)


@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64"])  # AVX2 (8-lane) and SSE2 (4-lane) code paths
def test_other_isas(tmp_path_factory, shared_cache, arch):
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86-64 only")
    picked = [ALL[1], ALL[6], ALL[9], ALL[13], ALL[4]]
    out = tmp_path_factory.mktemp(f"lib-{arch}")
    res = build_library(generate([(c.spec, c.packed) for c in picked]), out, cpu_arch=arch, cache=shared_cache)
    assert any(f"-march={arch}" in c for c in res.commands)
    rng = np.random.default_rng(3)
    for case in picked:
        sess = session(res.path, case.model())
        for M in (1, 37):
            x = rng.standard_normal((M, case.K)).astype(np.float32)
            r = rng.standard_normal((M, case.N)).astype(np.float32)
            feeds = {"X": x, "R": r} if case.ep.residual else {"X": x}
            y = sess.run(None, feeds)[0]
            ref = reference(x, case.W, case.ep, case.bias, r)
            err = np.abs(y - ref).max() / max(1.0, np.abs(ref).max())
            assert err < 2e-5, f"{case.id()} M={M} {arch}: {err:.3g}"


@pytest.mark.parametrize("family,pattern", [("cpu_bcsr", Pattern("block", block=(16, 16))),
                                            ("cpu_csr", Pattern("unstructured")),
                                            ("cpu_tile", Pattern("tile", granularity=8)),
                                            ("cpu_nm", Pattern("nm", n=2, m=4))])
def test_all_zero_weight_keeps_the_epilogue(tmp_path_factory, shared_cache, family, pattern):
    K, N, ep = 24, 20, E(True, "gelu", True)
    W = np.zeros((K, N), np.float32)
    packed = pack(W, pattern)
    spec = KernelSpec("linear", family, "cpu", "fp32", pattern, K, N, ep, (), ("native",), packed.tables_hash())
    res = build_library(generate([(spec, packed)]), tmp_path_factory.mktemp("zero"), cache=shared_cache)
    case = Case.__new__(Case)
    case.family, case.pattern, case.K, case.N, case.ep, case.W, case.packed, case.spec = \
        family, pattern, K, N, ep, W, packed, spec
    case.bias = np.linspace(-3, 3, N).astype(np.float32)
    x = np.random.default_rng(0).standard_normal((40, K)).astype(np.float32)
    r = np.random.default_rng(1).standard_normal((40, N)).astype(np.float32)
    y = session(res.path, case.model()).run(None, {"X": x, "R": r})[0]
    np.testing.assert_allclose(y, reference(x, W, ep, case.bias, r), rtol=1e-5, atol=1e-5)


def test_generate_dedups_and_skips_cuda_when_asked():
    c = ALL[0]
    cuda_spec = KernelSpec("linear", "cuda_not_registered", "cuda", "fp32", c.pattern, c.K, c.N, c.ep, (),
                           ("sm_80",), c.spec.tables_hash)
    srcs = generate([(c.spec, c.packed), (c.spec, c.packed), (cuda_spec, c.packed)], cuda=False)
    assert [s.relpath for s in srcs] == [f"{c.spec.procedural_name()}.cc", "registry.cc"]
    assert "_cuda" not in srcs[-1].text.split('extern "C" {')[1]


def test_unexpected_bias_is_a_clear_error(cpu_library):
    res, _ = cpu_library
    c = ALL[0]  # plain: no bias
    m = c.model()
    m.graph.initializer.append(numpy_helper.from_array(c.bias, "bias"))
    m.graph.node[0].input.append("bias")
    with pytest.raises(Exception, match="without a bias"):
        session(res.path, m).run(None, {"X": np.ones((3, c.K), np.float32)})
