"""``cpu_bcsr``: block-sparse weights (BCSC), register-blocked micro-kernel.

Work: for each column block (w columns) and each panel of R rows of X, an R x CW register tile
(CW = up to 2 vectors) accumulates X[r, kb*h + kk] * Vblk[kk, :] over the stored blocks of that
column; the epilogue (bias, activation, residual) is applied to the tile before the one store.
Tasks are (row chunk of R*panels rows) x (column group); column groups (cut at generation time
with equal numbers of blocks) are used only when there are too few row chunks to share out.
"""
from __future__ import annotations

from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from ...pattern import Pattern
from . import common


@register_family
class CpuBcsr(KernelFamily):
    name = "cpu_bcsr"
    device = "cpu"
    patterns = ("block",)
    dtypes = ("fp32",)

    def tile_candidates(self, pattern: Pattern, K: int, N: int, dtype: str) -> list[tuple[int, ...]]:
        # (R rows per micro-tile, max vectors per micro-tile row, row panels per task)
        return [(8, 2, 4), (6, 2, 4), (12, 2, 2), (4, 4, 4)]

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        h, w = spec.pattern.block
        return common.cost_seconds(self.name, spec, packed, M, int(packed.values.size),
                                   efficiency=common.lane_efficiency(w))

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        common.check_spec(self, spec, packed)
        h, w = spec.pattern.block
        col_ptr, row_idx = packed.tables["col_ptr"], packed.tables["row_idx"]
        ncb = len(col_ptr) - 1
        r, nv, panels = (tuple(spec.tile) + (8, 2, 4)[len(spec.tile):])[:3] if spec.tile else (8, 2, 4)
        grp = common.balanced_groups(col_ptr[1:] - col_ptr[:-1], 8)
        ctx = common.base_context(spec, packed)
        ctx.update({"stored": int(packed.values.size),
            "values_layout": f"values[{len(row_idx)}][{h}][{w}], block rows row-major",
            "cb": w, "cb_what": "block width", "ncb": ncb, "tile_r": r, "tile_nv": nv, "panels": panels,
            "ng": len(grp) - 1, "grp_ptr": common.c_array(grp), "min_row_tasks": 16,
            "h": h, "kb_last": (spec.K - 1) // h, "k_tail": spec.K % h, "nnzb": len(row_idx),
            "col_ptr": common.c_array(col_ptr), "row_idx": common.c_array(row_idx),
            "row_idx_len": max(1, len(row_idx)),
        })
        return common.source(spec, "cpu_bcsr.cc.j2", ctx)
