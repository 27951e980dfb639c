"""``cpu_tile``: tile-wise sparsity (SC'20): each tile of G columns keeps its own set of K rows.

Same register-blocked scheme as ``cpu_bcsr`` with the column block = one tile and the
reduction running over the tile's kept rows (baked row table): a dense GEMM on gathered
X columns per tile. Tiles narrower than 8 columns take the column-wise path of ``cpu_csr``
(see ``cpu_bcsr``'s narrow blocks).
"""
from __future__ import annotations

import numpy as np

from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from ...pattern import Pattern
from . import common


NARROW = 8  # tiles narrower than this take the column-wise path


@register_family
class CpuTile(KernelFamily):
    name = "cpu_tile"
    device = "cpu"
    patterns = ("tile",)
    dtypes = ("fp32",)

    def tile_candidates(self, pattern: Pattern, K: int, N: int, dtype: str) -> list[tuple[int, ...]]:
        return [(8, 2, 4), (6, 2, 4), (4, 4, 4)]

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        if spec.pattern.granularity < NARROW:
            return common.cost_seconds("cpu_csr", spec, packed, M, int(packed.values.size))
        return common.cost_seconds(self.name, spec, packed, M, int(packed.values.size),
                                   efficiency=common.lane_efficiency(spec.pattern.granularity))

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        common.check_spec(self, spec, packed)
        G = spec.pattern.granularity
        tile_ptr, rows = packed.tables["tile_ptr"], packed.tables["rows"]
        if G < NARROW:
            return self._render_narrow(spec, packed)
        nt = len(tile_ptr) - 1
        r, nv, panels = (tuple(spec.tile) + (8, 2, 4)[len(spec.tile):])[:3] if spec.tile else (8, 2, 4)
        grp = common.balanced_groups(tile_ptr[1:] - tile_ptr[:-1], 8)
        ctx = common.base_context(spec, packed)
        ctx.update({"stored": int(packed.values.size),
            "values_layout": f"values[{len(rows)}][{G}], one row per kept (tile, k)",
            "cb": G, "cb_what": "tile granularity G", "ncb": nt, "tile_r": r, "tile_nv": nv, "panels": panels,
            "ng": len(grp) - 1, "grp_ptr": common.c_array(grp), "min_row_tasks": 16,
            "tile_ptr": common.c_array(tile_ptr), "rows": common.c_array(rows), "rows_len": max(1, len(rows)),
        })
        return common.source(spec, "cpu_tile.cc.j2", ctx)

    def _render_narrow(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        G, N = spec.pattern.granularity, spec.N
        tile_ptr, rows = packed.tables["tile_ptr"], packed.tables["rows"]
        cp = np.zeros(N + 1, dtype=np.int64)
        rl, vl = [], []
        for n in range(N):
            t, c = divmod(n, G)
            i = np.arange(tile_ptr[t], tile_ptr[t + 1])
            rl.append(rows[i])
            vl.append(i * G + c)
            cp[n + 1] = cp[n] + len(i)
        r = np.concatenate(rl) if rl else np.zeros(0, np.int64)
        v = np.concatenate(vl) if vl else np.zeros(0, np.int64)
        grp = common.balanced_groups(np.diff(cp), 8)
        ctx = common.base_context(spec, packed)
        ctx.update({"stored": int(len(r)), "tile_nvm": 4, "ng": len(grp) - 1, "grp_ptr": common.c_array(grp),
                    "col_ptr": common.c_array(cp), "row_idx": common.c_array(r), "val_idx": common.c_array(v),
                    "nnz_len": max(1, len(r)),
                    "values_layout": f"tile-wise G={G} (narrow) weight, values[{len(rows)}][{G}]"})
        return common.source(spec, "cpu_csr.cc.j2", ctx)
