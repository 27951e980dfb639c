"""Compile generated CUDA sources into a loadable shared library (for tuning, benchmarks, tests).

The engine's own library is built by custom_ops.build_library; this is the small, standalone
path the tuner needs: nvcc -> one ``.so`` per group of sources, keyed by sha256(sources, command,
nvcc version) under ``$SPARSIFY_CACHE_DIR/cuda-dev`` (default ``~/.cache/sparsify-onnx``),
written through a temporary file and ``os.replace`` so concurrent builders never see half a file.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ..errors import SparsifyError
from ..codegen.registry import GeneratedSource


def cache_dir() -> str:
    d = os.environ.get("SPARSIFY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "sparsify-onnx")
    return d


def nvcc_path() -> str | None:
    p = shutil.which("nvcc")
    if p:
        return p
    for c in ("/usr/local/cuda/bin/nvcc",):
        if os.path.exists(c):
            return c
    return None


@lru_cache(maxsize=None)
def nvcc_version() -> str:
    p = nvcc_path()
    if not p:
        return ""
    return subprocess.run([p, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]


def gencode_flags(arch=("sm_90",)) -> list[str]:
    """nvcc -gencode pairs. sm_90 is built as sm_90a (same devices: compute capability 9.0), so Hopper-only
    instructions (wgmma) are available to the kernels that guard them with __CUDA_ARCH_FEAT_SM90_ALL."""
    out = []
    for a in arch:
        cc = str(a).replace("sm_", "").replace("compute_", "")
        if cc == "90" and _nvcc_major() >= 12:  # sm_90a needs CUDA 12.0+; older nvcc keeps plain sm_90
            cc = "90a"
        out += ["-gencode", f"arch=compute_{cc},code=sm_{cc}"]
    return out


def _nvcc_major() -> int:
    """CUDA major version of the nvcc in use ("Build cuda_13.0.r13.0/..."); 99 when unknown (assume new)."""
    import re
    m = re.search(r"cuda_(\d+)\.", nvcc_version())
    return int(m.group(1)) if m else 99


def nvcc_command(arch=("sm_90",), shared=True) -> list[str]:
    cmd = [nvcc_path() or "nvcc", "-O3", "-std=c++17", *gencode_flags(arch), "-Xcompiler", "-fPIC",
           "-cudart", "static"]
    if shared:
        cmd += ["-shared", "-ldl", "-Xlinker", "-s"]
    return cmd


def build_shared(sources: list[GeneratedSource], arch=("sm_90",), name: str = "kernels") -> str:
    """One shared library holding every source's launchers; returns its path (cached)."""
    if not nvcc_path():
        raise SparsifyError("nvcc not found: cannot compile CUDA kernels", hint="install the CUDA toolkit")
    text = "\n".join(s.text for s in sources)
    cmd = nvcc_command(arch)
    h = hashlib.sha256()
    h.update(text.encode())
    h.update(repr(cmd[1:]).encode())
    h.update(nvcc_version().encode())
    key = h.hexdigest()[:24]
    out_dir = os.path.join(cache_dir(), "cuda-dev")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{name}-{key}.so")
    if os.path.exists(out):
        return out
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = os.path.join(tmp, f"{name}.cu")
        with open(src, "w") as f:
            f.write(text)
        so = os.path.join(tmp, f"{name}.so")
        full = cmd + ["-o", so, src]
        r = subprocess.run(full, capture_output=True, text=True)
        if r.returncode != 0:
            keep = os.path.join(out_dir, f"{name}-{key}-failed.cu")
            shutil.copy(src, keep)
            raise SparsifyError(f"nvcc failed ({' '.join(full)}):\n{r.stderr[-4000:]}\nsource: {keep}")
        os.replace(so, out)
    return out


def build_many(groups: list[list[GeneratedSource]], arch=("sm_90",), jobs: int | None = None) -> list[str]:
    """Build several libraries in parallel (nvcc is single-threaded)."""
    jobs = jobs or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(lambda g: build_shared(g, arch), groups))


class CudaLib:
    """A loaded library of generated launchers (see custom_ops/abi.h)."""

    def __init__(self, path: str):
        self.path = path
        self.lib = ctypes.CDLL(path)

    def launcher(self, name: str):
        fn = getattr(self.lib, f"{name}_cuda")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        return fn

    def scratch(self, name: str, M: int) -> int:
        fn = getattr(self.lib, f"{name}_cuda_scratch")
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_int64]
        return int(fn(M))
