"""Tuning on the target: pick the fastest tile configuration of a kernel by timing it on the GPU.

    from sparsify_onnx.tune import tune, candidates
    choice = tune(candidates(spec, packed), M=4096)        # measured when a GPU is present
    choice.spec, choice.seconds, choice.measured, choice.reason

Every candidate is rendered, compiled with nvcc into one library (tune.build, cached),
loaded, and timed on the real shape (M rows, random data, inputs resident on the device)
with CUDA events over many launches; the fastest wins. Results are cached per (GPU name,
kernel spec without its tile, M, and a hash of the kernel-generating code, so a changed kernel is timed
again) in ``$SPARSIFY_CACHE_DIR/tune.json`` (default
``~/.cache/sparsify-onnx/tune.json``). Without a GPU (or nvcc) the family's documented cost
model chooses, and the choice says so (``measured=False``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ..codegen.registry import KernelSpec, PackedWeight, get_family
from .build import cache_dir, nvcc_path

__all__ = ["tune", "candidates", "build_candidates", "TuneChoice", "cache_path"]


@dataclass
class TuneChoice:
    spec: KernelSpec
    seconds: float
    measured: bool
    reason: str
    table: list[tuple[str, float]] = field(default_factory=list)  # (tile, seconds) per candidate

    def to_dict(self) -> dict:
        return {"kernel": self.spec.procedural_name(), "family": self.spec.family, "tile": list(self.spec.tile),
                "seconds": self.seconds, "measured": self.measured, "reason": self.reason, "table": self.table}


def candidates(spec: KernelSpec, packed: PackedWeight, limit: int = 12, others: int = 2,
               M: int = 4096, capability: tuple[int, int] | None = None) -> list[tuple[KernelSpec, PackedWeight]]:
    """``spec``'s family's first ``limit`` tiles, then the first ``others`` tiles of every other family of the
    same device that supports the pattern and that the cost model does not put at over twice the time
    (kernel variants: the measurement, not the model, picks the family). Same computation, same packed
    weight, same op key. ``capability``: the GPU that will time them; families built for another GPU
    generation (the Hopper wgmma ones) are left out there, and a spec of one becomes its portable family's.
    Tiles a family cannot build for this weight (infinite modelled cost) are left out."""
    from ..codegen.registry import families

    def runs_here(f) -> bool:
        return capability is None or f.needs_capability is None or tuple(f.needs_capability) == tuple(capability)
    fam = get_family(spec.family)
    if not runs_here(fam) and fam.portable:
        fam = get_family(fam.portable)
        spec = dataclasses.replace(spec, family=fam.name, tile=())
    out = [(dataclasses.replace(spec, tile=tuple(t)), packed)
           for t in fam.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[:limit]]
    out = [c for c in out if _buildable(fam, c[0], packed, M)]
    if others <= 0:
        return out
    try:
        base = fam.cost(out[0][0], packed, M) if out else float("inf")
    except NotImplementedError:
        base = float("inf")
    for f in families(spec.device):
        if f.name == fam.name or not runs_here(f) or f.supports(spec.pattern, spec.K, spec.N, spec.dtype):
            continue
        tiles = f.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[:others]
        if not tiles:
            continue
        first = dataclasses.replace(spec, family=f.name, tile=tuple(tiles[0]))
        try:
            if f.cost(first, packed, M) > 2 * base:
                continue
        except NotImplementedError:
            continue
        out += [(dataclasses.replace(spec, family=f.name, tile=tuple(t)), packed) for t in tiles]
    return out


def _buildable(fam, spec, packed, M) -> bool:
    """False for a tile the family cannot build for this weight (its cost model says infinite, e.g. a cover whose
    tables are too large to bake) or for this node (its geometry refuses it, e.g. the block kernel's TMA store of Y
    with a residual to add); such a tile is not compiled or timed."""
    try:
        return fam.cost(spec, packed, M) != float("inf")
    except NotImplementedError:
        return True
    except ValueError:
        return False


def cache_path() -> str:
    return os.path.join(cache_dir(), "tune.json")


_CODE_VERSION: str | None = None


def code_version() -> str:
    """Hash of the code that generates the CUDA kernels (templates and families): cached timings are keyed by it,
    so a changed kernel is timed again instead of being judged by an older version's numbers."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import hashlib
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "codegen")
        h = hashlib.sha256()
        for sub, ext in (("templates", ".j2"), ("cuda", ".py")):
            d = os.path.join(root, sub)
            for f in sorted(os.listdir(d)):
                if f.endswith(ext):
                    with open(os.path.join(d, f), "rb") as fh:
                        h.update(f.encode() + b"\0" + fh.read())
        _CODE_VERSION = h.hexdigest()[:12]
    return _CODE_VERSION


def _key(gpu_name: str, spec: KernelSpec, M: int) -> str:
    s = dataclasses.replace(spec, tile=())
    return f"{gpu_name}|{code_version()}|{s.procedural_name()}|{s.spec_hash()[:16]}|M={M}"


def _load_cache() -> dict:
    try:
        with open(cache_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _store(key: str, value: dict) -> None:
    os.makedirs(os.path.dirname(cache_path()), exist_ok=True)
    data = _load_cache()
    data[key] = value
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cache_path()), suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, cache_path())


def _by_cost(cands, M, reason) -> TuneChoice:
    table = []
    for spec, packed in cands:
        table.append((_label(spec, cands[0][0]), get_family(spec.family).cost(spec, packed, M)))
    i = int(np.argmin([t for _, t in table]))
    return TuneChoice(cands[i][0], table[i][1], False, reason, table)


def _label(spec: KernelSpec, first: KernelSpec) -> str:
    """A candidate's name in the timing table: its tile, prefixed by its family when not the first's."""
    tile = "x".join(map(str, spec.tile))
    return tile if spec.family == first.family else f"{spec.family}:{tile}"


def _cusparselt_algorithm(lib, name: str, M: int):
    """The cuSPARSELt algorithm id an n:m kernel chose for M rows (-1: the library default), or None (another
    kind of kernel, or no cuSPARSELt plan: the FMA fallback ran)."""
    import ctypes
    fn = getattr(lib.lib, f"{name}_cuda_lt_alg", None)
    if fn is None:
        return None
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int64]
    alg = int(fn(M))
    return None if alg == -2 else alg


def build_candidates(cands) -> str:
    """Compile every candidate into one library (cached); its path."""
    from .build import build_shared
    srcs = []
    for spec, packed in cands:
        srcs += get_family(spec.family).render(spec, packed)
    return build_shared(srcs, name="tune")


def tune(kernel_candidates: list[tuple[KernelSpec, PackedWeight]], M: int, gpu=None, reps: int = 20,
         use_cache: bool = True) -> TuneChoice:
    """Fastest of ``kernel_candidates`` (same computation, different tiles) for ``M`` rows.

    ``gpu``: a tune.device back end, None to open one if possible, or False to force the cost model.
    """
    if not kernel_candidates:
        raise ValueError("no kernel candidates")
    cands = list(kernel_candidates)
    if cands[0][0].device != "cuda":
        return _by_cost(cands, M, "cost model (not a CUDA kernel)")
    if gpu is False:
        return _by_cost(cands, M, "cost model (tuning disabled)")
    if nvcc_path() is None:
        return _by_cost(cands, M, "cost model (no nvcc: nothing compiled or timed)")
    if gpu is None:
        from .device import open_device
        gpu = open_device()
    if gpu is None:
        return _by_cost(cands, M, "cost model (no GPU present: nothing timed)")

    key = _key(gpu.name, cands[0][0], M)
    if use_cache:
        hit = _load_cache().get(key)
        if hit:
            for spec, _ in cands:
                if list(spec.tile) == hit["tile"] and spec.family == hit.get("family", cands[0][0].family):
                    return TuneChoice(spec, hit["seconds"], True, f"measured on {gpu.name} (cached)",
                                      [tuple(t) for t in hit.get("table", [])])

    from .build import CudaLib
    from ..codegen.cuda.nm import use_cusparselt
    use_cusparselt()  # n:m candidates time cuSPARSELt, not their fallback, where the wheel is installed
    lib = CudaLib(build_candidates(cands))
    spec0, packed0 = cands[0]
    rng = np.random.default_rng(0)
    npdt = np.float16 if spec0.dtype == "fp16" else np.float32
    X = gpu.upload(rng.standard_normal((M, spec0.K)).astype(npdt))
    V = gpu.upload(np.ascontiguousarray(packed0.values.astype(npdt)))
    B = gpu.upload(rng.standard_normal(spec0.N).astype(npdt))
    R = gpu.upload(rng.standard_normal((M, spec0.N)).astype(npdt))
    Y = gpu.empty(M * spec0.N * np.dtype(npdt).itemsize)
    table = []
    for spec, _ in cands:
        name = spec.procedural_name()
        fn = lib.launcher(name)
        sb = lib.scratch(name, M)
        S = gpu.empty(sb)
        ep = spec.epilogue

        def call(fn=fn, S=S, sb=sb, ep=ep):
            rc = fn(X.ptr, V.ptr, B.ptr if ep.bias else None, R.ptr if ep.residual else None, Y.ptr, M,
                    gpu.stream(), S.ptr, sb)
            if rc:
                raise RuntimeError(f"{name}: launcher returned {rc}")
        try:
            table.append((_label(spec, cands[0][0]), gpu.time(call, reps)))
        except Exception as e:  # noqa: BLE001  (a candidate that fails to launch is not chosen)
            table.append((_label(spec, cands[0][0]), float("inf")))
            print(f"tune: {name}: {e}")
    i = int(np.argmin([t for _, t in table]))
    reason = f"measured on {gpu.name} ({len(cands)} candidates, CUDA events over {reps} launches)"
    lt_alg = _cusparselt_algorithm(lib, cands[i][0].procedural_name(), M)
    if lt_alg is not None:
        reason += f"; cuSPARSELt algorithm id {lt_alg}" if lt_alg >= 0 else "; cuSPARSELt default algorithm"
    choice = TuneChoice(cands[i][0], table[i][1], True, reason, table)
    _store(key, {"family": choice.spec.family, "tile": list(choice.spec.tile), "seconds": choice.seconds,
                 "table": table})
    return choice
