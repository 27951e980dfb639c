"""``cpu_bcsr``: block-sparse weights (BCSC), register-blocked micro-kernel.

Work: for each column block (w columns) and each panel of R rows of X, an R x CW register tile
(CW = up to 2 vectors) accumulates X[r, kb*h + kk] * Vblk[kk, :] over the stored blocks of that
column; the epilogue (bias, activation, residual) is applied to the tile before the one store.
Tasks are (row chunk of R*panels rows) x (column group); column groups (cut at generation time
with equal numbers of blocks) are used only when there are too few row chunks to share out.

Blocks narrower than 8 columns fill too few vector lanes for that scheme; they are computed
column by column like ``cpu_csr`` (X panel transposed, vectorised along M), walking the block
rows of each column through baked row and value-offset tables.
"""
from __future__ import annotations

import numpy as np

from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from ...pattern import Pattern
from . import common


NARROW = 8  # blocks narrower than this take the column-wise path


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
        if w < NARROW:  # column-wise path: the rate of cpu_csr
            return common.cost_seconds("cpu_csr", spec, packed, M, int(packed.values.size))
        return common.cost_seconds(self.name, spec, packed, M, int(packed.values.size),
                                   efficiency=common.lane_efficiency(w))

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        common.check_spec(self, spec, packed)
        h, w = spec.pattern.block
        if w < NARROW:
            return self._render_narrow(spec, packed)
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

    def _render_narrow(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        h, w = spec.pattern.block
        K, N = spec.K, spec.N
        col_ptr, row_idx = packed.tables["col_ptr"], packed.tables["row_idx"]
        kk = np.arange(h)
        cp = np.zeros(N + 1, dtype=np.int64)
        rows_l, vals_l = [], []
        for n in range(N):
            j, c = divmod(n, w)
            b = np.arange(col_ptr[j], col_ptr[j + 1])
            r = (row_idx[b][:, None] * h + kk[None, :]).reshape(-1)
            v = (b[:, None] * (h * w) + kk[None, :] * w + c).reshape(-1)
            keep = r < K  # padding rows of the last block row
            rows_l.append(r[keep])
            vals_l.append(v[keep])
            cp[n + 1] = cp[n] + int(keep.sum())
        rows = np.concatenate(rows_l) if rows_l else np.zeros(0, np.int64)
        vals = np.concatenate(vals_l) if vals_l else np.zeros(0, np.int64)
        grp = common.balanced_groups(np.diff(cp), 8)
        nvm = 4
        ctx = common.base_context(spec, packed)
        ctx.update({"stored": int(len(rows)), "tile_nvm": nvm, "ng": len(grp) - 1, "grp_ptr": common.c_array(grp),
                    "col_ptr": common.c_array(cp), "row_idx": common.c_array(rows), "val_idx": common.c_array(vals),
                    "nnz_len": max(1, len(rows)),
                    "values_layout": f"block {h}x{w} (narrow) BCSC weight, values[{len(row_idx)}][{h}][{w}]"})
        return common.source(spec, "cpu_csr.cc.j2", ctx)
