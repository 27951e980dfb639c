"""Unstructured (CSC) kernels on CUDA cores: ``cuda_csr``.

Chosen over PIT-style micro-tile condensing on tensor cores after counting: at 90% random
sparsity an n8 x k16 micro-tile of W is almost never empty (0.9^128), and condensing the
live rows of an 8-column strip keeps 1 - 0.9^8 = 57% of K at 8-wide tiles, a quarter of the
tensor cores' shared-memory-limited rate. Here every non-zero costs one coalesced 128/256-byte
warp load of a row of X^T (scratch) and 64 FMAs; the column lists are baked into the source.
Tile: (CB, WARPS): columns per CTA and warps per CTA.
"""
from __future__ import annotations

import numpy as np

from ..registry import KernelFamily, register_family
from .common import base_ctx, fmt_array, index_ctype, render_template, roofline, source

MAX_BAKED_NNZ = 4_000_000


@register_family
class CudaCsr(KernelFamily):
    """Unstructured (CSC) on CUDA cores, fp32 accumulate, fp16 or fp32 I/O, X^T gathered from scratch."""
    name = "cuda_csr"
    device = "cuda"
    patterns = ("unstructured",)
    dtypes = ("fp16", "fp32")

    def tile_candidates(self, pattern, K, N, dtype):
        return [(32, 8), (64, 8), (16, 4), (32, 4)]

    def render(self, spec, packed):
        if packed.nnz > MAX_BAKED_NNZ:
            raise ValueError(f"{self.name}: {packed.nnz} non-zeros is over the {MAX_BAKED_NNZ} baked-table limit")
        CB, WARPS = spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0]
        ri = np.asarray(packed.tables["row_idx"])
        ctx = base_ctx(spec, packed)
        ctx.update(CB=CB, WARPS=WARPS, col_ptr=fmt_array(packed.tables["col_ptr"]), row_idx=fmt_array(ri),
                   nnz=int(ri.size), index_type=index_ctype(spec.K))
        return source(spec, render_template("cuda_csr.cu.j2", **ctx))

    def cost(self, spec, packed, M):
        return roofline(M, spec.K, spec.N, packed.nnz, "csr", 1.0, spec.dtype, packed.values.nbytes * 3,
                        spec.epilogue.residual, launches=2)
