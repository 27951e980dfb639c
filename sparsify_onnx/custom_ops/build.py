"""Build ``libsparsify_ops.so`` from generated sources and the static op layer.

`build_library(sources, out_dir, ...)` writes the sources under ``out_dir/src/`` (with the op
layer ``sparsify_ops.cc``, ``abi.h`` and the linker version script), compiles every translation
unit separately through the compile cache (g++ for C++, nvcc for CUDA) and links the shared
library, which exports only ``RegisterCustomOps``. CUDA sources are compiled when nvcc is found
(else skipped with a one-line notice: the library still runs on CPU); the CUDA runtime is
linked statically so the library needs no libcudart.so.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..codegen.registry import GeneratedSource
from ..errors import SparsifyError
from .cache import CompileCache, cache_key
from .ort_headers import api_version, find_ort_include

HERE = Path(__file__).resolve().parent
STATIC_FILES = ("abi.h", "sparsify_ops.cc", "exports.map", "layernorm_gather.cu")
LIB_NAME = "libsparsify_ops.so"


@dataclass
class BuildResult:
    path: Path  # out_dir/libsparsify_ops.so
    commands: list[str] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    cuda: bool = False  # whether CUDA kernels were compiled in
    notice: str | None = None  # one line for the user (e.g. CUDA skipped)
    objects: list[Path] = field(default_factory=list)


def find_cxx() -> str:
    cxx = os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if not path:
        raise SparsifyError(f"C++ compiler {cxx!r} not found; the CPU kernels cannot be built",
                            hint="install g++ (Debian/Ubuntu: apt-get install g++) or set CXX to a C++17 compiler")
    return path


def find_nvcc() -> str | None:
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"),
                 os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


@functools.lru_cache(maxsize=None)
def compiler_version(exe: str) -> str:
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        return (p.stdout + p.stderr).strip()
    except Exception as e:  # pragma: no cover - reported by the compile itself
        return f"unknown ({e})"


@functools.lru_cache(maxsize=None)
def _native_id() -> str:
    """What -march=native means on this machine (part of the cache key)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        import platform
        return platform.processor()


def _cuda_lib_dir(nvcc: str) -> Path | None:
    """Directory of libcudart_static.a for this nvcc (nvcc may be a wrapper script elsewhere)."""
    roots = [Path(nvcc).resolve().parent.parent]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            roots.append(Path(os.environ[env]))
    try:  # ask nvcc where it lives: `#$ TOP=/usr/local/cuda-13.0/bin/..`
        p = subprocess.run([nvcc, "--dryrun", "-v", "x.cu"], capture_output=True, text=True, timeout=60)
        for line in (p.stdout + p.stderr).splitlines():
            if "TOP=" in line:
                roots.append(Path(line.split("TOP=", 1)[1].strip()).resolve())
    except Exception:
        pass
    roots += [Path("/usr/local/cuda"), *sorted(Path("/usr/local").glob("cuda-*"), reverse=True)]
    for root in roots:
        for d in (root / "lib64", root / "lib", root / "targets" / "x86_64-linux" / "lib"):
            if (d / "libcudart_static.a").is_file():
                return d
    return None


def _gencode(cuda_arch) -> list[str]:
    from ..tune.build import gencode_flags  # one rule for both builds (sm_90 -> sm_90a)
    return gencode_flags(tuple(cuda_arch))


def _fail(what: str, cmd: list[str], output: str, source: Path | None) -> SparsifyError:
    err = SparsifyError(f"{what} failed" + (f": {source}" if source else ""),
                        where=str(source) if source else None,
                        details=f"$ {' '.join(cmd)}\n{output.rstrip()}",
                        hint="the generated source is kept under src/; this is a bug in sparsify-onnx "
                             "unless the compiler setup is broken")
    err.command = cmd
    err.output = output
    err.source = source
    return err


def _run(cmd: list[str], what: str, source: Path | None, cwd: Path | None = None) -> None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except OSError as e:
        raise _fail(what, cmd, str(e), source) from None
    if p.returncode != 0:
        raise _fail(what, cmd, p.stdout + p.stderr, source)


def build_library(sources: list[GeneratedSource], out_dir: Path, *, cuda: bool | None = None,
                  cuda_arch=("sm_80", "sm_90"), cpu_arch: str = "native",
                  progress: Callable[[str], None] | None = None, jobs: int | None = None,
                  cache: CompileCache | None = None) -> BuildResult:
    """Compile ``sources`` (+ the op layer) into ``out_dir/libsparsify_ops.so``, ``jobs`` at a time (default: the
    host's cores, at most 8: an nvcc run with large baked tables takes a few GB).

    cuda: None = build CUDA sources when there are any and nvcc exists; False = never; True = want them
    (still skipped, with a notice, when nvcc is missing).
    """
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    src_dir = out_dir / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    cxx = find_cxx()
    inc = find_ort_include()
    ort_ver = api_version(inc)
    cache = cache or CompileCache()
    hits0, misses0 = cache.hits, cache.misses

    # sources on disk (kept for reading and debugging)
    for name in STATIC_FILES:
        shutil.copyfile(HERE / name, src_dir / name)
    files: list[tuple[Path, str, str]] = []  # (path, lang, text)
    for s in sources:
        p = src_dir / s.relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(s.text)
        files.append((p, s.lang, s.text))
    op_layer = src_dir / "sparsify_ops.cc"
    files.append((op_layer, "c++", op_layer.read_text()))
    headers = "".join((HERE / h).read_text() for h in ("abi.h",))

    # (cuda=True builds the op layer's CUDA kernels even without generated ones: a plan whose sparse ops all stay
    # dense may still hold LayerNormGather ops)
    want_cuda = cuda is True or (cuda is None and any(lang == "cuda" for _, lang, _ in files))
    nvcc = find_nvcc() if want_cuda else None
    build_cuda = bool(want_cuda and nvcc)
    notice = None
    cuda_lib = None
    if want_cuda and not nvcc:
        notice = "nvcc not found: CUDA kernels skipped, the library runs on CPU only"
    if build_cuda:
        cuda_lib = _cuda_lib_dir(nvcc)
        if cuda_lib is None:
            build_cuda = False
            notice = f"libcudart_static.a not found next to {nvcc}: CUDA kernels skipped, the library runs on CPU only"

    if build_cuda:  # the op layer's own CUDA kernel (LayerNormGather)
        ln = src_dir / "layernorm_gather.cu"
        files.append((ln, "cuda", ln.read_text()))

    cxx_flags = ["-std=gnu++17", "-O3", f"-march={cpu_arch}", "-fPIC", "-fvisibility=hidden",
                 "-fvisibility-inlines-hidden", "-ffp-contract=fast", "-Wall", "-Wno-unused-function",
                 "-Wno-unused-variable", "-I", "{srcdir}", "-I", str(inc)]
    if build_cuda:
        cxx_flags += ["-DSPARSIFY_WITH_CUDA", "-I", str(cuda_lib.parent / "include")]
    nvcc_flags = ["-std=c++17", "-O3", *_gencode(cuda_arch), "-Xcompiler", "-fPIC,-fvisibility=hidden",
                  "-DSPARSIFY_WITH_CUDA", "-I", "{srcdir}", "-I", str(inc)]

    arch_id = _native_id() if cpu_arch == "native" else cpu_arch
    jobs_list = []
    for path, lang, text in files:
        if lang == "cuda" and not build_cuda:
            continue
        if lang == "cuda":
            exe, flags, extra = nvcc, nvcc_flags, ""
        else:
            exe, flags, extra = cxx, cxx_flags, arch_id
        template = [exe, *flags, "-c", "{src}", "-o", "{obj}"]
        key = cache_key(text + headers, template, compiler_version=compiler_version(exe), ort_version=ort_ver,
                        extra=extra)
        jobs_list.append((path, template, key))

    commands: list[str] = []

    def compile_one(item):
        path, template, key = item
        obj_name = path.stem + ".o"

        def build(tmp: Path):
            cmd = [a.replace("{src}", str(path)).replace("{obj}", str(tmp / obj_name)).replace("{srcdir}", str(src_dir))
                   for a in template]
            _run(cmd, "compiling", path)

        cmd_txt = " ".join(a.replace("{src}", str(path)).replace("{obj}", obj_name).replace("{srcdir}", str(src_dir))
                           for a in template)
        obj, hit = cache.get_or_build(key, obj_name, build)
        return obj, hit, cmd_txt

    jobs = jobs or min(8, os.cpu_count() or 2)
    say(f"compiling {len(jobs_list)} translation units (jobs={jobs}, cache {cache.root})")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        results = list(ex.map(compile_one, jobs_list))
    objects = [r[0] for r in results]
    commands += [r[2] for r in results]

    # link (not cached: quick), atomically into place
    lib = out_dir / LIB_NAME
    fd, tmp_name = tempfile.mkstemp(prefix=".libsparsify_ops.", suffix=".so", dir=out_dir)
    os.close(fd)
    tmp_so = Path(tmp_name)
    link = [cxx, "-shared", "-o", str(tmp_so), *map(str, objects),
            f"-Wl,--version-script={src_dir / 'exports.map'}", "-Wl,--no-undefined", "-Wl,--as-needed",
            "-Wl,-O1", "-lm"]
    if build_cuda:
        link += [f"-L{cuda_lib}", "-l:libcudart_static.a", "-ldl", "-lpthread", "-lrt"]
    commands.append(" ".join(link))
    say("linking " + LIB_NAME)
    try:
        _run(link, "linking " + LIB_NAME, None)
        os.replace(tmp_so, lib)
    finally:
        if tmp_so.exists():
            tmp_so.unlink()
    return BuildResult(path=lib, commands=commands, cache_hits=cache.hits - hits0,
                       cache_misses=cache.misses - misses0, cuda=build_cuda, notice=notice, objects=objects)
