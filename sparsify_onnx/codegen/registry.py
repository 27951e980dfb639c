"""Kernel identity and the kernel-family registry.

A `KernelSpec` names one generated kernel: op, dtype, pattern, tile config,
device/arch and epilogue, plus K, N and the hash of the baked index tables.
Its `procedural_name()` is at once the C symbol prefix, the key the custom op
dispatches on (attribute ``kernel`` of ``ai.sparsify::SparseLinear``) and part
of the compile-cache key.

A `KernelFamily` (one per way of computing a pattern on a device, e.g.
``cpu_bcsr``, ``cuda_bcsr_tc``) is registered with `@register_family` and
knows how to pack a weight, estimate cost, list tile candidates and render its
source. Packing formats are defined per pattern in `packing.py` and shared by
every device, so one packed initializer serves the CPU and the CUDA kernel of
the same node.

Op semantics (``op == "linear"``): ``Y[m, n] = act(sum_k X[m, k] * W[k, n] +
bias[n]) + residual[m, n]``, with W the effective [K, N] weight (Gemm's alpha
and transB already folded in by the transform stage).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..pattern import Pattern

ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh")


@dataclass(frozen=True)
class Epilogue:
    bias: bool = False
    activation: str = "none"  # applied after bias, before the residual add
    residual: bool = False

    def short(self) -> str:
        s = ("b" if self.bias else "") + ({"none": "", "relu": "r", "gelu": "g", "gelu_tanh": "t"}[self.activation]) \
            + ("a" if self.residual else "")
        return s or "plain"


@dataclass(frozen=True)
class KernelSpec:
    op: str  # "linear"
    family: str  # registered KernelFamily name
    device: str  # "cpu" | "cuda"
    dtype: str  # "fp32" | "fp16"
    pattern: Pattern  # in the [K, N] layout the kernel computes with
    K: int
    N: int
    epilogue: Epilogue = Epilogue()
    tile: tuple[int, ...] = ()  # family-specific tile configuration
    arch: tuple[str, ...] = ()  # e.g. ("sm_80", "sm_90") for CUDA, ("native",) for CPU
    tables_hash: str = ""  # sha256 of the baked index tables (the exact sparsity pattern)

    def procedural_name(self) -> str:
        tile = "x".join(str(t) for t in self.tile) or "auto"
        return (f"sp_{self.op}_{self.family}_{self.dtype}_{self.pattern.short()}_k{self.K}_n{self.N}"
                f"_{self.epilogue.short()}_t{tile}_{self.tables_hash[:12]}")

    def op_key(self) -> str:
        """Device-neutral identity of the computation: the op's ``kernel`` attribute.

        The CPU and the CUDA kernel of one node share it; the dispatch table maps it
        to each device's launcher (``<procedural_name>_cpu`` / ``_cuda``).
        """
        return (f"sp_{self.op}_{self.dtype}_{self.pattern.short()}_k{self.K}_n{self.N}"
                f"_{self.epilogue.short()}_{self.tables_hash[:12]}")

    def spec_hash(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"name": self.procedural_name(), "op": self.op, "family": self.family, "device": self.device,
                "dtype": self.dtype, "pattern": self.pattern.to_dict(), "K": self.K, "N": self.N,
                "epilogue": {"bias": self.epilogue.bias, "activation": self.epilogue.activation,
                             "residual": self.epilogue.residual},
                "tile": list(self.tile), "arch": list(self.arch), "tables_hash": self.tables_hash}


@dataclass
class PackedWeight:
    """A weight in a pattern's packed format (see packing.py).

    ``values`` becomes the op's second input (an initializer); ``tables`` are
    the index tables baked into the generated source as constants.
    """
    pattern: Pattern
    K: int
    N: int
    values: np.ndarray
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    nnz: int = 0  # live weight elements (for FLOP counts)

    @property
    def density(self) -> float:
        return self.nnz / float(self.K * self.N) if self.K * self.N else 1.0

    def tables_hash(self) -> str:
        h = hashlib.sha256(repr(self.pattern).encode())
        h.update(f"{self.K}x{self.N}".encode())
        for k in sorted(self.tables):
            a = np.ascontiguousarray(self.tables[k])
            h.update(k.encode())
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()


@dataclass
class GeneratedSource:
    """One generated file. ``lang`` is "c++" or "cuda"; ``relpath`` lives under engine/src/."""
    relpath: str
    text: str
    lang: str
    kernel: str | None = None  # procedural name, when the file holds one kernel


class KernelFamily:
    """Base class: one way of computing ``linear`` for some patterns on one device."""
    name: ClassVar[str] = ""
    device: ClassVar[str] = "cpu"
    patterns: ClassVar[tuple[str, ...]] = ()
    dtypes: ClassVar[tuple[str, ...]] = ("fp32",)
    # a family whose fast path runs only on one GPU generation: its compute capability, and the family its
    # kernels fall back to elsewhere (tuning on another GPU times that one instead)
    needs_capability: ClassVar[tuple[int, int] | None] = None
    portable: ClassVar[str | None] = None

    def supports(self, pattern: Pattern, K: int, N: int, dtype: str) -> str | None:
        """None when supported, else the reason why not (for --explain)."""
        if pattern.kind not in self.patterns:
            return f"{self.name} handles {', '.join(self.patterns)}, not {pattern.kind}"
        if dtype not in self.dtypes:
            return f"{self.name} handles {', '.join(self.dtypes)}, not {dtype}"
        return None

    def tile_candidates(self, pattern: Pattern, K: int, N: int, dtype: str) -> list[tuple[int, ...]]:
        return [()]

    def default_tile(self, pattern: Pattern, K: int, N: int, dtype: str, M: int) -> tuple[int, ...]:
        return self.tile_candidates(pattern, K, N, dtype)[0]

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        """Estimated seconds for one call (documented cost model, used without a GPU/tuner)."""
        raise NotImplementedError

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        """Source files that define this kernel's launcher (see custom_ops/abi.h)."""
        raise NotImplementedError

    def describe(self, spec: KernelSpec, packed: PackedWeight) -> str:
        """How this kernel runs this weight, where its tile does not say it (the manifest's kernel "form" and the
        report show it); empty for most families."""
        return ""


_FAMILIES: dict[str, KernelFamily] = {}


def register_family(cls: type[KernelFamily]) -> type[KernelFamily]:
    inst = cls()
    if not inst.name:
        raise ValueError(f"{cls.__name__} has no name")
    _FAMILIES[inst.name] = inst
    return cls


def get_family(name: str) -> KernelFamily:
    _load_builtin()
    return _FAMILIES[name]


def families(device: str | None = None) -> list[KernelFamily]:
    _load_builtin()
    return [f for f in _FAMILIES.values() if device is None or f.device == device]


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil
    from . import cpu as _cpu_pkg
    for mod in pkgutil.iter_modules(_cpu_pkg.__path__):
        importlib.import_module(f"{_cpu_pkg.__name__}.{mod.name}")
    try:
        from . import cuda as _cuda_pkg
    except ImportError:
        return
    for mod in pkgutil.iter_modules(_cuda_pkg.__path__):
        importlib.import_module(f"{_cuda_pkg.__name__}.{mod.name}")
