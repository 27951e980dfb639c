"""``cpu_csr``: unstructured weights (CSC) with the non-zero positions baked in.

A panel of MP rows of X (4 vectors) is transposed into a scratch buffer; every output column is
then a sum over its non-zeros of value * (a row of the transposed panel), vectorised along M,
two independent accumulator chains for FMA latency. Columns are cut into groups of equal
non-zero counts at generation time for small M.
"""
from __future__ import annotations

from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from ...pattern import Pattern
from . import common


@register_family
class CpuCsr(KernelFamily):
    name = "cpu_csr"
    device = "cpu"
    patterns = ("unstructured",)
    dtypes = ("fp32",)

    def tile_candidates(self, pattern: Pattern, K: int, N: int, dtype: str) -> list[tuple[int, ...]]:
        return [(4,), (2,)]  # vectors along M per panel

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        return common.cost_seconds(self.name, spec, packed, M, int(packed.values.size))

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        common.check_spec(self, spec, packed)
        col_ptr, row_idx = packed.tables["col_ptr"], packed.tables["row_idx"]
        grp = common.balanced_groups(col_ptr[1:] - col_ptr[:-1], 8)
        nvm = spec.tile[0] if spec.tile else 4
        ctx = common.base_context(spec, packed)
        ctx.update({"stored": int(packed.values.size), "tile_nvm": nvm, "val_idx": None,
                    "values_layout": f"unstructured (CSC) weight, values[{len(row_idx)}]", "ng": len(grp) - 1, "grp_ptr": common.c_array(grp),
                    "col_ptr": common.c_array(col_ptr), "row_idx": common.c_array(row_idx),
                    "nnz_len": max(1, len(row_idx))})
        return common.source(spec, "cpu_csr.cc.j2", ctx)
