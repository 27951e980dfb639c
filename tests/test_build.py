"""custom_ops: build_library, compile cache, exported symbols, errors, CUDA compile, ORT headers."""
from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from sparsify_onnx.codegen import generate, render_registry
from sparsify_onnx.codegen.packing import pack
from sparsify_onnx.codegen.registry import Epilogue, GeneratedSource, KernelSpec
from sparsify_onnx.custom_ops import build as build_mod
from sparsify_onnx.custom_ops.build import build_library, find_nvcc
from sparsify_onnx.custom_ops.cache import CompileCache, cache_key
from sparsify_onnx.custom_ops.ort_headers import api_version, find_ort_include
from sparsify_onnx.errors import SparsifyError
from sparsify_onnx.pattern import Pattern

HERE = Path(__file__).resolve().parent.parent / "sparsify_onnx" / "custom_ops"


def small_kernel(seed=0, K=64, N=32):
    rng = np.random.default_rng(seed)
    keep = rng.random((K // 16, N // 16)) < 0.5
    keep[0, 0] = True
    W = (rng.standard_normal((K, N)) * np.kron(keep, np.ones((16, 16)))).astype(np.float32)
    pat = Pattern("block", block=(16, 16))
    p = pack(W, pat)
    spec = KernelSpec("linear", "cpu_bcsr", "cpu", "fp32", pat, K, N, Epilogue(), (8, 2, 4), ("native",),
                      p.tables_hash())
    return spec, p, W


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return CompileCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache):
    spec, p, W = small_kernel()
    out = tmp_path_factory.mktemp("lib")
    res = build_library(generate([(spec, p)]), out, cache=cache)
    return res, spec, p, W


def test_library_layout_and_result(built):
    res, spec, _, _ = built
    assert res.path.name == "libsparsify_ops.so" and res.path.is_file()
    src = res.path.parent / "src"
    for f in ("registry.cc", "sparsify_ops.cc", "abi.h", "exports.map", f"{spec.procedural_name()}.cc"):
        assert (src / f).is_file(), f
    assert res.cuda is False and res.notice is None
    assert any("-march=native" in c for c in res.commands) and any("-shared" in c for c in res.commands)


def test_only_register_custom_ops_is_exported(built):
    res = built[0]
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("nm not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(res.path)], capture_output=True, text=True, check=True)
    funcs = [ln.split()[-1] for ln in out.stdout.splitlines() if len(ln.split()) == 3 and ln.split()[1] in "TtWi"]
    assert funcs == ["RegisterCustomOps"], out.stdout
    data = [ln for ln in out.stdout.splitlines() if len(ln.split()) == 3 and ln.split()[1] in "DdBbRrVv"]
    assert not any("sp_kernel_table" in d or "_cpu" in d for d in data), data


def test_library_needs_no_cuda_runtime(built):
    ldd = shutil.which("ldd")
    if not ldd:
        pytest.skip("ldd not installed")
    out = subprocess.run([ldd, str(built[0].path)], capture_output=True, text=True).stdout
    assert "cudart" not in out and "onnxruntime" not in out


def _sparse_linear_session_parts(spec, p, library):
    """(model, session options): one SparseLinear node of `spec` over the values `p`, the library registered."""
    import onnxruntime as ort
    from helpers import sparse_linear_model
    m = sparse_linear_model(spec, p.values)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(library))
    return m, so


def test_runs_in_plain_onnxruntime(built):
    ort = pytest.importorskip("onnxruntime")
    res, spec, p, W = built
    m, so = _sparse_linear_session_parts(spec, p, res.path)
    x = np.random.default_rng(1).standard_normal((9, spec.K)).astype(np.float32)
    y = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    np.testing.assert_allclose(y, x @ W, rtol=1e-5, atol=1e-4)


def test_second_build_hits_the_cache(tmp_path, cache):
    spec, p, _ = small_kernel(seed=5)
    srcs = generate([(spec, p)])
    r1 = build_library(srcs, tmp_path / "a", cache=cache)
    r2 = build_library(srcs, tmp_path / "b", cache=cache)  # another directory: paths are not in the key
    assert r2.cache_misses == 0 and r2.cache_hits == len(srcs) + 1
    assert r1.cache_hits + r1.cache_misses == r2.cache_hits
    assert r2.path.is_file()
    # a different pattern is a different kernel: only its own source and the table recompile
    spec2, p2, _ = small_kernel(seed=6)
    r3 = build_library(generate([(spec2, p2)]), tmp_path / "c", cache=cache)
    assert r3.cache_misses == 2 and r3.cache_hits == 1  # the op layer is shared


def test_cache_key_covers_its_inputs():
    base = dict(compiler_version="g++ 12", ort_version=21)
    k = cache_key("int x;", ["g++", "-O3"], **base)
    assert k == cache_key("int x;", ["g++", "-O3"], **base)
    assert k != cache_key("int y;", ["g++", "-O3"], **base)
    assert k != cache_key("int x;", ["g++", "-O2"], **base)
    assert k != cache_key("int x;", ["g++", "-O3"], compiler_version="g++ 13", ort_version=21)
    assert k != cache_key("int x;", ["g++", "-O3"], compiler_version="g++ 12", ort_version=22)


def test_cache_is_atomic_and_locked(tmp_path):
    cache = CompileCache(tmp_path)
    calls = []

    def build(d: Path):
        calls.append(1)
        (d / "x.o").write_text("obj")

    results = []
    ts = [threading.Thread(target=lambda: results.append(cache.get_or_build("ab" * 32, "x.o", build)))
          for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(calls) == 1 and sorted(h for _, h in results) == [False, True, True, True]

    def broken(d: Path):
        (d / "y.o").write_text("half")
        raise RuntimeError("compiler died")

    with pytest.raises(RuntimeError):
        cache.get_or_build("cd" * 32, "y.o", broken)
    assert cache.lookup("cd" * 32, "y.o") is None
    assert not any(p.name.startswith(".") for p in (tmp_path / "obj" / "cd").iterdir())


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSIFY_CACHE_DIR", str(tmp_path / "c"))
    assert CompileCache().root == tmp_path / "c"


def test_broken_source_reports_command_output_and_path(tmp_path, cache):
    bad = GeneratedSource("broken_kernel.cc", "// generated\nint broken( { return 0; }\n", "c++", "broken")
    with pytest.raises(SparsifyError) as ei:
        build_library([bad], tmp_path, cache=cache)
    e = ei.value
    text = str(e)
    assert "broken_kernel.cc" in text and "g++" in text and "-c" in text
    assert "error" in e.output and str(tmp_path / "src" / "broken_kernel.cc") in " ".join(e.command)
    assert e.source == tmp_path / "src" / "broken_kernel.cc"
    assert (tmp_path / "src" / "broken_kernel.cc").is_file()  # kept for reading
    assert not (tmp_path / "libsparsify_ops.so").exists()


def test_missing_compiler_is_a_user_error(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    spec, p, _ = small_kernel()
    with pytest.raises(SparsifyError, match="no-such-compiler-xyz") as ei:
        build_library(generate([(spec, p)]), tmp_path, cache=cache)
    assert ei.value.hint


def test_cuda_skipped_without_nvcc(tmp_path, monkeypatch, cache):
    monkeypatch.setattr(build_mod, "find_nvcc", lambda: None)
    spec, p, _ = small_kernel()
    cu = GeneratedSource("k.cu", "this is not even C++", "cuda", "k")
    res = build_library(generate([(spec, p)]) + [cu], tmp_path, cache=cache)
    assert res.cuda is False and "nvcc" in res.notice and res.path.is_file()


def test_registry_cuda_entries():
    spec, p, _ = small_kernel()
    cuda_spec = KernelSpec("linear", "cuda_fake", "cuda", "fp32", spec.pattern, spec.K, spec.N, spec.epilogue, (),
                           ("sm_80",), spec.tables_hash)
    assert cuda_spec.op_key() == spec.op_key()
    cu_name = cuda_spec.procedural_name()
    src = GeneratedSource(f"{cu_name}.cu", f"size_t {cu_name}_cuda_scratch(int64_t M)", "cuda", cu_name)
    reg = render_registry([(spec, p), (cuda_spec, p)], [src]).text
    assert f"SP_CUDA({cu_name}_cuda)" in reg and f"SP_CUDA({cu_name}_cuda_scratch)" in reg
    assert f"{spec.procedural_name()}_cpu" in reg
    assert reg.count(f'"{spec.op_key()}"') == 1
    assert reg.count("NULL, NULL}") == 2  # (no derived buffers: no retain/release; the terminator)
    ref = GeneratedSource(f"{cu_name}.cu", f"void {cu_name}_cuda_retain(const void*); "
                          f"void {cu_name}_cuda_release(const void*);", "cuda", cu_name)
    reg_ref = render_registry([(spec, p), (cuda_spec, p)], [ref]).text
    assert f"SP_CUDA({cu_name}_cuda_retain), SP_CUDA({cu_name}_cuda_release)" in reg_ref
    reg_cpu = render_registry([(spec, p)], []).text
    assert "_cuda" not in reg_cpu.split("extern \"C\" {")[1]


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not installed")
def test_op_layer_compiles_with_cuda_flag(tmp_path):
    """The -DSPARSIFY_WITH_CUDA half of the op layer must compile, with g++ and with nvcc."""
    inc = find_ort_include()
    cuda_lib = build_mod._cuda_lib_dir(find_nvcc())
    assert cuda_lib is not None, "nvcc without libcudart_static.a"
    shutil.copy(HERE / "abi.h", tmp_path / "abi.h")
    common = ["-DSPARSIFY_WITH_CUDA", "-I", str(tmp_path), "-I", str(inc), "-I", str(cuda_lib.parent / "include"),
              "-c", str(HERE / "sparsify_ops.cc")]
    for cmd in (["g++", "-std=gnu++17", "-O1", "-fPIC", "-Wall", "-Werror", "-Wno-unused-function", *common,
                 "-o", str(tmp_path / "g.o")],
                [find_nvcc(), "-std=c++17", "-x", "cu", "-Xcompiler", "-fPIC", *common, "-o", str(tmp_path / "n.o")]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, " ".join(cmd) + "\n" + p.stdout + p.stderr


CUDA_KERNEL = r'''
#include <cuda_runtime.h>
#include "abi.h"
__global__ void zero_k(float* y, int64_t n) { int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; if (i < n) y[i] = 0.f; }
extern "C" size_t NAME_cuda_scratch(int64_t M) { return 0; }
extern "C" int NAME_cuda(const void* X, const void* values, const void* bias, const void* residual, void* Y,
                         int64_t M, void* stream, void* scratch, size_t scratch_bytes) {
  int64_t n = M * 32;
  zero_k<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)stream>>>((float*)Y, n);
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
'''


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not installed")
def test_cuda_sources_compile_and_link_statically(tmp_path, cache):
    ort = pytest.importorskip("onnxruntime")
    spec, p, W = small_kernel()
    cuda_spec = KernelSpec("linear", "cuda_test", "cuda", "fp32", spec.pattern, spec.K, spec.N, spec.epilogue, (),
                           ("sm_80",), spec.tables_hash)
    name = cuda_spec.procedural_name()
    cu = GeneratedSource(f"{name}.cu", "// generated by sparsify-onnx, do not edit\n" + CUDA_KERNEL.replace("NAME", name),
                         "cuda", name)
    cpu_srcs = generate([(spec, p)])
    srcs = cpu_srcs[:-1] + [cu, render_registry([(spec, p), (cuda_spec, p)], cpu_srcs[:-1] + [cu])]
    res = build_library(srcs, tmp_path, cuda_arch=("sm_80",), cache=cache)
    assert res.cuda is True and any("nvcc" in c for c in res.commands)
    ldd = subprocess.run(["ldd", str(res.path)], capture_output=True, text=True).stdout
    assert "libcudart.so" not in ldd
    # the CUDA-enabled library still serves the CPU provider
    m, so = _sparse_linear_session_parts(spec, p, res.path)
    x = np.ones((3, spec.K), np.float32)
    y = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    np.testing.assert_allclose(y, x @ W, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not installed")
def test_a_cuda_library_without_cuda_kernels_still_holds_the_op_layers_cuda_ops(tmp_path, cache):
    """cuda=True with only CPU kernels (every sparse op kept dense): LayerNormGather's CUDA kernels are built, so an
    fp16 plan's LayerNormGather nodes have a CUDA kernel."""
    spec, p, _ = small_kernel()
    res = build_library(generate([(spec, p)]), tmp_path, cuda=True, cuda_arch=("sm_90",), cache=cache)
    assert res.cuda is True and any("layernorm_gather.cu" in c for c in res.commands)
    assert build_library(generate([(spec, p)]), tmp_path / "cpu", cache=cache).cuda is False  # (None: only if any)


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not installed")
def test_cuda_compile_error_fails(tmp_path, cache):
    cu = GeneratedSource("bad.cu", "__global__ void k( { }\n", "cuda", "bad")
    with pytest.raises(SparsifyError) as ei:
        build_library([cu], tmp_path, cuda_arch=("sm_80",), cache=cache)
    assert "nvcc" in str(ei.value) and "bad.cu" in str(ei.value)


def test_ort_headers(monkeypatch, tmp_path):
    inc = find_ort_include()
    assert (inc / "onnxruntime_c_api.h").is_file() and (inc / "onnxruntime_cxx_api.h").is_file()
    assert api_version(inc) >= 16
    monkeypatch.setenv("SPARSIFY_ORT_INCLUDE", str(tmp_path))
    with pytest.raises(SparsifyError, match="SPARSIFY_ORT_INCLUDE"):
        find_ort_include()
    monkeypatch.setenv("SPARSIFY_ORT_INCLUDE", str(inc))
    assert find_ort_include() == inc


def test_ort_headers_without_apt_is_a_user_error(monkeypatch, tmp_path):
    from sparsify_onnx.custom_ops import ort_headers
    monkeypatch.delenv("SPARSIFY_ORT_INCLUDE", raising=False)
    monkeypatch.setenv("SPARSIFY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ort_headers, "_valid", lambda d: False)
    monkeypatch.setattr(ort_headers.shutil, "which", lambda name: None)
    with pytest.raises(SparsifyError, match="apt-get") as ei:
        ort_headers.find_ort_include()
    assert "SPARSIFY_ORT_INCLUDE" in ei.value.hint


def test_empty_kernel_list_builds(tmp_path, cache):
    ort = pytest.importorskip("onnxruntime")
    res = build_library(generate([]), tmp_path, cache=cache)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(res.path))  # registers the op; no kernels to dispatch to
