"""GPU: every CUDA family against a numpy reference on random data, outputs poisoned (NaN) first.

    python -m pytest -m gpu tests/test_cuda_kernels.py

Needs nvcc, an NVIDIA GPU and pycuda or PyTorch (skipped otherwise). All kernels are compiled
into one library (tune.build, cached) and called through their ABI launchers.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cuda_cases import ACTIVATION_CASES, CASES, activation_case, build_case, reference  # noqa: E402

from sparsify_onnx.tune.build import nvcc_path  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    if nvcc_path() is None:
        pytest.skip("nvcc not found")
    from sparsify_onnx.tune.device import open_device
    dev = open_device(os.environ.get("SPARSIFY_GPU_BACKEND"))
    if dev is None:
        pytest.skip("no GPU (or neither pycuda nor torch with CUDA)")
    from sparsify_onnx.codegen.cuda.nm import use_cusparselt
    use_cusparselt()
    return dev


@pytest.fixture(scope="module")
def lib(gpu):
    # the persistent block kernels (TMA form, TM 3) run on at most 5 CTAs here, so each walks several items (the
    # library reads it once per process; restored after, so later modules' libraries run on the whole GPU)
    old = os.environ.get("SPARSIFY_TMA_GRID")
    os.environ.setdefault("SPARSIFY_TMA_GRID", "5")
    from sparsify_onnx.tune.build import CudaLib, build_shared
    built = [build_case(i) for i in range(len(CASES))]
    path = build_shared([b[3][0] for b in built], name="test_cuda_kernels")
    yield CudaLib(path), built
    if old is None:
        os.environ.pop("SPARSIFY_TMA_GRID", None)


def _run(gpu, cl, spec, pk, W, M, seed, bV=None):
    """Y and its numpy reference for fresh X, bias, residual; ``bV``: the values on the GPU (else uploaded)."""
    rng = np.random.default_rng(seed)
    npdt = np.float16 if spec.dtype == "fp16" else np.float32
    K, N = spec.K, spec.N
    X = rng.standard_normal((M, K)).astype(npdt)
    bias = rng.standard_normal(N).astype(npdt)
    res = rng.standard_normal((M, N)).astype(npdt)
    bX, bB, bR = gpu.upload(X), gpu.upload(bias), gpu.upload(res)
    own = bV is None  # (then held here: freed at the end, with the kernel's buffers derived from it)
    bV = gpu.upload(pk.values) if own else bV
    bY = gpu.empty(M * N * np.dtype(npdt).itemsize)
    gpu.fill(bY, 0xFF)  # NaN in fp16 and fp32
    name = spec.procedural_name()
    sb = cl.scratch(name, M)
    bS = gpu.empty(sb)
    gpu.fill(bS, 0xFF)
    with _held(cl, spec, [bV]) if own else contextlib.nullcontext():
        rc = cl.launcher(name)(bX.ptr, bV.ptr, bB.ptr if spec.epilogue.bias else None,
                               bR.ptr if spec.epilogue.residual else None, bY.ptr, M, gpu.stream(), bS.ptr, sb)
        assert rc == 0, f"launcher returned {rc}"
        gpu.sync()
    Y = gpu.download(bY, (M, N), npdt).astype(np.float64)
    ref = reference(X, W, bias, res, spec.epilogue)
    return Y, ref


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[1]}-{c[2].short()}-k{c[3]}n{c[4]}-{c[5]}"
                                                       for c in CASES])
@pytest.mark.parametrize("M", [1, 37, 300])
def test_kernel_matches_numpy(gpu, lib, i, M):
    cl, built = lib
    spec, pk, W, _ = built[i]
    if "wgmma" in spec.family:  # the wgmma code itself on Hopper, else the portable kernel it carries
        assert getattr(cl.lib, f"{spec.procedural_name()}_cuda_uses_wgmma")() == int(gpu.capability == (9, 0))
    for seed in (1, 2):  # fresh inputs each run
        Y, ref = _run(gpu, cl, spec, pk, W, M, seed * 1000 + M)
        assert np.isfinite(Y).all(), "unwritten (NaN) outputs"
        rel = np.linalg.norm(Y - ref) / max(np.linalg.norm(ref), 1e-30)
        tol = 5e-3 if spec.dtype == "fp16" else 1e-5
        assert rel < tol, f"relative error {rel:.2e} >= {tol}"
        if spec.dtype == "fp16":
            assert np.abs(Y - ref).max() < 0.05 * max(1.0, np.abs(ref).max())


def _case_index(family: str) -> int:
    """The first case of ``family``; "cuda_bcsr_wgmma/tma": the first of that family's TMA form (7th tile field)."""
    if family.endswith("/tma"):
        return next(i for i, c in enumerate(CASES) if c[0] == family[:-4] and c[6] and len(c[6]) == 7 and c[6][6])
    return [c[0] for c in CASES].index(family)


@pytest.mark.parametrize("family", ["cuda_nm_sparselt", "cuda_cover_wgmma", "cuda_bcsr_wgmma/tma"])
def test_one_derived_weight_per_values_tensor(gpu, lib, family):
    """The kernels that derive a weight of their own from the values (cuSPARSELt's compressed W, the cover, the
    block kernel's B images) keep one per values tensor, as onnxruntime sessions each hold their own copy of an
    initializer: two values tensors of the same node, called in turn, each give their own result (before,
    cuSPARSELt kept only the last one's)."""
    cl, built = lib
    i = _case_index(family)
    spec, pk, W, _ = built[i]
    scales = (1.0, 2.0, 1.0, -0.5)
    bufs = {sc: gpu.upload((pk.values * sc).astype(pk.values.dtype)) for sc in set(scales)}  # (all alive at once)
    with _held(cl, spec, bufs.values()):
        for n, sc in enumerate(scales):
            Y, ref = _run(gpu, cl, spec, pk, W * sc, 300, 40 + n, bV=bufs[sc])
            assert np.linalg.norm(Y - ref) / np.linalg.norm(ref) < 5e-3, (family, sc)


@contextlib.contextmanager
def _held(cl, spec, bufs):
    """References to values buffers for their kernel's derived buffers, as the op layer holds them (abi.h,
    sp_cuda_ref_fn): released at the end, so a later buffer at a freed address gets its own, not a stale copy.
    (Kernels that derive nothing export no such functions.)"""
    name = spec.procedural_name()
    retain = getattr(cl.lib, f"{name}_cuda_retain", None)
    release = getattr(cl.lib, f"{name}_cuda_release", None)
    ptrs = [ctypes.c_void_p(b.ptr) for b in bufs] if retain and release else []
    for p in ptrs:
        retain(p)
    try:
        yield
    finally:
        for p in ptrs:
            release(p)


@pytest.mark.parametrize("family", ["cuda_nm_sparselt", "cuda_nm_wgmma", "cuda_cover_wgmma", "cuda_bcsr_wgmma/tma"])
def test_one_node_on_two_gpus(gpu, lib, family):
    """onnxruntime may serve sessions on several GPUs of one process: a node called on GPU 0, then on GPU 1, then on
    GPU 0 again gives the right result each time, with its per-GPU state (cuSPARSELt's handle, offset table and
    plans; the wgmma metadata words; the cover) built on each GPU (before, cuSPARSELt refused GPU 1 with code 6)."""
    if getattr(gpu, "kind", "") != "pycuda" or gpu.drv.Device.count() < 2:
        pytest.skip("needs two GPUs and the pycuda back end")
    from sparsify_onnx.tune.device import PycudaDevice
    cl, built = lib
    spec, pk, W, _ = built[_case_index(family)]
    uses_lt = getattr(cl.lib, f"{spec.procedural_name()}_cuda_uses_cusparselt", None)

    def check(dev, seed):  # (_run holds the values it uploads, as the op layer does)
        Y, ref = _run(dev, cl, spec, pk, W, 300, seed)
        assert np.isfinite(Y).all() and np.linalg.norm(Y - ref) / np.linalg.norm(ref) < 5e-3, (family, seed)
        return uses_lt() if uses_lt else None

    on0 = check(gpu, 61)
    gpu1 = PycudaDevice(index=1)  # (GPU 1's context is current until close)
    try:
        assert check(gpu1, 62) == on0  # cuSPARSELt on both GPUs, or on neither
    finally:
        gpu1.close()
    assert check(gpu, 63) == on0


def test_scratch_is_checked(gpu, lib):
    cl, built = lib
    for spec, pk, W, _ in built:
        name = spec.procedural_name()
        if cl.scratch(name, 64) > 0:
            bY = gpu.empty(64 * spec.N * 4)
            rc = cl.launcher(name)(bY.ptr, bY.ptr, None, None, bY.ptr, 64, gpu.stream(), None, 0)
            assert rc != 0, f"{name} ran without the scratch it asked for"
            return
    pytest.skip("no family with scratch")


def _fallback_run(gpu, monkeypatch, env: str, family: str, seed: int, lib_name: str, flag: str):
    """Build the first case of ``family`` into its own library with ``env``=1 set (launchers read it once per
    library), run it at M = 45 and check it against numpy; returns the launcher's ``_cuda_<flag>()`` value."""
    from sparsify_onnx.tune.build import CudaLib, build_shared
    spec, pk, W, srcs = build_case([c[0] for c in CASES].index(family), seed=seed)
    monkeypatch.setenv(env, "1")
    cl = CudaLib(build_shared(srcs, name=lib_name))
    Y, ref = _run(gpu, cl, spec, pk, W, 45, 7)
    assert np.isfinite(Y).all()
    assert np.linalg.norm(Y - ref) / np.linalg.norm(ref) < 5e-3
    return getattr(cl.lib, f"{spec.procedural_name()}_cuda_{flag}")()


@pytest.mark.parametrize("fam", ["cuda_tile_wgmma", "cuda_bcsr_wgmma", "cuda_nm_wgmma", "cuda_cover_wgmma"])
def test_wgmma_portable_fallback(gpu, monkeypatch, fam):
    """SPARSIFY_NO_WGMMA=1: the wgmma launcher runs the node's portable mma.sync kernel, as it does off Hopper;
    same results."""
    assert _fallback_run(gpu, monkeypatch, "SPARSIFY_NO_WGMMA", fam, 5, f"test_wgmma_fallback_{fam}", "uses_wgmma") == 0


def test_nm_fallback_without_cusparselt(gpu, monkeypatch):
    """The n:m launcher without cuSPARSELt: plain FMA fallback, same results."""
    assert _fallback_run(gpu, monkeypatch, "SPARSIFY_NO_CUSPARSELT", "cuda_nm_sparselt", 99, "test_nm_fallback",
                         "uses_cusparselt") == 0


def _fp16_key(h: np.ndarray) -> np.ndarray:
    """fp16 values as integers in their order (one apart per ulp, +0 and -0 the same)."""
    b = h.view(np.uint16).astype(np.int64)
    return np.where(b & 0x8000, -(b & 0x7FFF), b)


@pytest.mark.parametrize("fam,act", ACTIVATION_CASES)
def test_fused_activation_per_element(gpu, fam, act):
    """The fp16 kernels' GELU (erf and tanh forms: exp2 and a reciprocal instead of erff or tanhf, cuda_common.cuh.j2)
    element by element: Y = act(X @ I) over every fp16 value in [-16, 16] gives the float64 function rounded to fp16,
    or its neighbour (ties of the rounding), for a CUDA-core family and a wgmma one."""
    from math import erfc, exp, sqrt

    from sparsify_onnx.tune.build import CudaLib, build_shared
    spec, pk, srcs, lib_name = activation_case(fam, act)
    K = N = spec.K
    cl = CudaLib(build_shared(srcs, name=lib_name))
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    x = h[np.isfinite(h) & (np.abs(h) <= 16)]
    M = -(-x.size // K)
    X = np.zeros(M * K, np.float16)
    X[:x.size] = x
    X = X.reshape(M, K)
    if act == "gelu":  # x Phi(x), Phi by erfc (no cancellation where x is very negative)
        f = np.vectorize(lambda v: v * 0.5 * erfc(-v / sqrt(2)))
    else:  # 0.5 x (1 + tanh(y)) = x / (1 + exp(-2 y))
        f = np.vectorize(lambda v: v / (1 + exp(min(700.0, -2 * sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))))
    ref = f(X.astype(np.float64)).astype(np.float16)
    bX, bV = gpu.upload(X), gpu.upload(pk.values)
    bY = gpu.empty(M * N * 2)
    gpu.fill(bY, 0xFF)
    name = spec.procedural_name()
    sb = cl.scratch(name, M)
    bS = gpu.empty(sb)
    with _held(cl, spec, [bV]):
        assert cl.launcher(name)(bX.ptr, bV.ptr, None, None, bY.ptr, M, gpu.stream(), bS.ptr, sb) == 0
        gpu.sync()
    Y = gpu.download(bY, (M, N), np.float16)
    assert np.isfinite(Y).all()
    d = np.abs(_fp16_key(Y) - _fp16_key(ref))
    worst = np.unravel_index(d.argmax(), d.shape)
    assert d.max() <= 1, f"{d.max()} ulp at x = {X[worst]}: {Y[worst]} against {ref[worst]}"
    assert (d > 0).mean() < 0.01
