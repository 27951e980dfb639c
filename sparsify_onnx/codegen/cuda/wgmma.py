"""Tile-wise (SC'20) fp16 on Hopper wgmma: ``cuda_tile_wgmma``. EXPERIMENTAL, off unless
``SPARSIFY_EXPERIMENTAL_WGMMA=1``: written after session 2's H200 time was spent, not yet run on a GPU.

The mma.sync tile kernel (``cuda_tile``) runs its mainloop at ~200 TFLOP/s of kept work on the H200, while
cuBLAS's wgmma kernels reach ~710; the issue's tile-wise bar (1.9x at 75% sparsity) needs ~370. This family
keeps the same data path (X transposed once into scratch, the kept rows of each 128-column tile gathered from
X^T with cp.async) but stores both operands in the 128-byte-swizzled shared layout that wgmma reads through
matrix descriptors, and multiplies with ``wgmma.mma_async m64n128k16`` (2 warpgroups, 128 rows per CTA).
``bench/cuda/wgmma_probe.cu`` is the same kernel standalone: it checks which descriptor stride convention
(LBO/SBO) is right and times it; ``DESC`` below must match what it finds.

Tile: (BM, KS, STAGES, INFLIGHT): rows per CTA (128 or 256: each of the 2 warpgroups owns 1 or 2 m64
sub-tiles; 256 halves the W tile's L2 traffic per FLOP), kept rows per pipeline stage, stages, and 1 to keep
one wgmma group in flight across the stage boundary (0: wait for it before refilling). G must be 128; the build compiles sm_90 as sm_90a.
"""
from __future__ import annotations

import os

from ..registry import KernelFamily, register_family
from .common import base_ctx, fmt_array, index_ctype, render_template, roofline, source
from .gather import _tables

# (LBO_A, SBO_A, LBO_B, SBO_B) as functions of the panel size (KS * 128 bytes): LBO strides the 64-wide MN
# panels, SBO the groups of 8 K rows (CUTLASS's canonical MN-major 128-byte-swizzle layout). To be confirmed
# on the GPU by bench/cuda/wgmma_probe.cu (its variant 0).
DESC = lambda panel: (panel, 1024, panel, 1024)  # noqa: E731


def enabled() -> bool:
    return os.environ.get("SPARSIFY_EXPERIMENTAL_WGMMA") == "1"


@register_family
class CudaTileWgmma(KernelFamily):
    """Tile-wise G=128, fp16, Hopper wgmma (experimental: SPARSIFY_EXPERIMENTAL_WGMMA=1)."""
    name = "cuda_tile_wgmma"
    device = "cuda"
    patterns = ("tile",)
    dtypes = ("fp16",)

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        if not enabled():
            return f"{self.name} is experimental (not yet run on a GPU): set SPARSIFY_EXPERIMENTAL_WGMMA=1"
        if pattern.granularity != 128:
            return f"{self.name} needs tiles of 128 columns, not {pattern.granularity}"
        if N % 8:
            return f"{self.name} needs N a multiple of 8, not {N}"
        return None

    def tile_candidates(self, pattern, K, N, dtype):
        return [(128, 64, 3, 0), (128, 64, 3, 1), (256, 64, 3, 1), (256, 64, 4, 1), (256, 32, 4, 1),
                (128, 32, 4, 0), (128, 128, 2, 0)]

    def _geometry(self, spec):
        BM, KS, ST, INF = spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0]
        return BM, KS, ST, INF

    def render(self, spec, packed):
        BM, KS, ST, INF = self._geometry(spec)
        tptr, units = _tables(spec, packed)
        la, sa, lb, sb = DESC(KS * 128)
        ctx = base_ctx(spec, packed)
        ctx.update(G=spec.pattern.granularity, BM=BM, KS=KS, STAGES=ST, INFLIGHT=INF, ntiles=len(tptr) - 1, tptr=fmt_array(tptr),
                   units=fmt_array(units), nunits=int(units.size),
                   unit_type=index_ctype(int(units.max()) if units.size else 0),
                   LBO_A=la, SBO_A=sa, LBO_B=lb, SBO_B=sb)
        return source(spec, render_template("cuda_tile_wgmma.cu.j2", **ctx))

    def cost(self, spec, packed, M):
        _, KS, _, _ = self._geometry(spec)
        tptr, _ = _tables(spec, packed)
        steps = sum(-(-int(tptr[i + 1] - tptr[i]) // KS) for i in range(len(tptr) - 1))
        return roofline(M, spec.K, spec.N, steps * KS * spec.pattern.granularity, "tc", 1.0, spec.dtype,
                        packed.values.nbytes, spec.epilogue.residual, launches=2)
