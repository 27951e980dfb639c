"""Sparsity patterns: how the live set of a tensor is structured.

A `Pattern` is a small frozen value shared by the spec, the sparsifiers, the
TeSA and the kernel specs. Geometry is always given in the tensor's *stored*
layout (for a MatMul weight W[K, N]: block [h, w] spans h rows of K and w
columns of N; for a Gemm with transB=1 the stored layout is [N, K]).
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("dense", "unstructured", "block", "nm", "tile", "channel")


@dataclass(frozen=True)
class Pattern:
    kind: str = "dense"
    block: tuple[int, int] | None = None  # block: (h, w) in stored layout
    n: int | None = None  # nm: n non-zeros in every group of m ...
    m: int | None = None  # ... along the reduction axis
    granularity: int | None = None  # tile (SC'20): G columns share one row mask
    axis: int | None = None  # channel: which axis of the stored tensor is pruned whole

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown pattern kind {self.kind!r}")

    def short(self) -> str:
        """Compact text used in reports and procedural kernel names."""
        if self.kind == "block":
            return f"block{self.block[0]}x{self.block[1]}"
        if self.kind == "nm":
            return f"{self.n}of{self.m}"
        if self.kind == "tile":
            return f"tile{self.granularity}"
        if self.kind == "channel":
            return f"channel{self.axis}"
        return self.kind

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind}
        for k in ("block", "n", "m", "granularity", "axis"):
            v = getattr(self, k)
            if v is not None:
                d[k] = list(v) if isinstance(v, tuple) else v
        return d


DENSE = Pattern("dense")
UNSTRUCTURED = Pattern("unstructured")
