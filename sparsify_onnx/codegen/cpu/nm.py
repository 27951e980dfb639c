"""``cpu_nm``: n:m weights (n kept in every group of m along K), offsets baked in.

Per row of X a group of m values is one vector; each kept (group, j) row of the packed weight
picks X[r, g*m + idx[., n]] for a vector of columns with one permute and FMAs it with the
values row. Register tiles of R rows x CW columns. Groups wider than a vector (m > 16 on
AVX-512, 8 on AVX2) and the columns left over at the right edge take a scalar path.
"""
from __future__ import annotations

from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from ...pattern import Pattern
from . import common


@register_family
class CpuNm(KernelFamily):
    name = "cpu_nm"
    device = "cpu"
    patterns = ("nm",)
    dtypes = ("fp32",)

    def supports(self, pattern: Pattern, K: int, N: int, dtype: str) -> str | None:
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        if not pattern.n or not pattern.m or pattern.m > 256:
            return f"{self.name} needs 0 < n <= m <= 256"
        return None

    def tile_candidates(self, pattern: Pattern, K: int, N: int, dtype: str) -> list[tuple[int, ...]]:
        return [(6, 2), (4, 2), (8, 1)]  # (rows, vectors of columns)

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        return common.cost_seconds(self.name, spec, packed, M, int(packed.values.size))

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        common.check_spec(self, spec, packed)
        n, m = spec.pattern.n, spec.pattern.m
        idx = packed.tables["idx"]
        groups = idx.shape[0] // n
        r, nv = (tuple(spec.tile) + (6, 2)[len(spec.tile):])[:2] if spec.tile else (6, 2)
        rows = "},\n    {".join(common.c_array(row, per_line=64) for row in idx) if idx.size else "0"
        ctx = common.base_context(spec, packed)
        ctx.update({"n": n, "m": m, "groups": groups, "k_tail": spec.K % m, "rows_total": groups * n,
                    "idx": "{" + rows + "}", "tile_r": r, "tile_nv": nv})
        return common.source(spec, "cpu_nm.cc.j2", ctx)
