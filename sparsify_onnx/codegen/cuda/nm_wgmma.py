"""Hopper's sparse tensor cores (``wgmma.mma_async.sp``, template ``cuda_nm_wgmma.cu.j2``): ``cuda_nm_wgmma`` for 2:4
weights and ``cuda_cover_wgmma`` for unstructured ones (a 2:4 cover plus an overflow list, below). On by default
with the other wgmma families (``SPARSIFY_WGMMA=0`` turns them off).

Why: cuSPARSELt (``cuda_nm_sparselt``) is slower than dense cuBLAS at BERT's smallest GEMM, (4096, 768, 768),
with every one of its algorithms (0.76x on the H200, bench/NOTES.md), and needs a separate epilogue pass.

How: the sparse operand of ``wgmma.sp`` is A, so a CTA computes a tile of Y^T = W^T X^T. A is W^T, read
MN-major straight from the packed n:m values ``[K/2, N]`` (the same initializer every n:m kernel uses); B is
X^T, read K-major from X's rows (no transpose, no scratch). The 2-bit offsets become wgmma metadata words
(CuTe's ``ELayout_64x32``; ``bench/cuda/wgmma_sp_probe.cu`` checked that layout, the MN-major A and the
k-offsets inside a swizzle atom on the H200), built on the host from the node's offset table on the kernel's
first call on each GPU. The epilogue (bias, activation) transposes the tile through shared memory with
``stmatrix .trans`` and writes Y with 16-byte stores, adding the residual. The source also carries the node's
portable kernel (``cuda_nm_sparselt``: cuSPARSELt or its FMA kernel; ``cuda_csr`` for the cover), which the
launcher runs off Hopper or with ``SPARSIFY_NO_WGMMA=1``.

Tile: (NWG, BM, KS, STAGES, INFLIGHT, RS): warpgroups per CTA (1 to 4, each 64 output columns), rows of X per
CTA (the wgmma n: a multiple of 32 from 64 to 256), k per pipeline stage (64 or 128), stages, 1 to keep one wgmma
group in flight across the stage boundary, RS > 0 to raster CTAs in supertiles of RS m-tiles (for weights larger
than the L2).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..registry import KernelFamily, register_family
from .common import LAUNCH, BW, base_ctx, fmt_array, render_template, source
from .csr import MAX_BAKED_NNZ
from .nm import hex_lines
from .wgmma import H200_SMS, embedded_fallback, hopper_supports

# dense-equivalent FLOP/s per SM of the mainloop (2 * M * N * K counted as if W were dense), fitted to the H200
# (session 5, bench/cuda/s5/run2): 8.2e12 at (4096, 768, 768), 7.2e12 at (4096, 768, 3072) (3x128x64x4x1x0),
# 6.3e12 at (4096, 3072, 768) (4x128x64x4x1x0), 6.0e12 at 8192^3 (2x256x64x3x1x8). At 8192^3 this kernel
# (1383 us, 1.20x cuBLAS) loses to cuSPARSELt (1114 us, 1.49x); at the BERT shapes it wins (1.09-1.24x against
# 0.78-1.08x), so both families stay and the cost model or the tuner picks per node.
NM_WGMMA_SM_RATE = 6.5e12

# the best tiles of session 5's H200 sweep first: 3 warpgroups x 128 rows (one wave of 128 CTAs at N = 768) at
# (4096, 768, 768) 1.24x and (4096, 768, 3072) 1.09x; 4 x 128 at (4096, 3072, 768) 1.20x; 2 x 256 rastered at
# 8192^3; then the runners-up
CANDIDATES = [(3, 128, 64, 4, 1, 0), (4, 128, 64, 4, 1, 0), (2, 256, 64, 3, 1, 8), (3, 128, 128, 3, 1, 0),
              (2, 96, 64, 4, 1, 0), (4, 96, 64, 4, 1, 0), (2, 128, 64, 4, 0, 0)]


@register_family
class CudaNmWgmma(KernelFamily):
    """2:4 fp16 on Hopper sparse wgmma (portable fallback: cuda_nm_sparselt)."""
    name = "cuda_nm_wgmma"
    device = "cuda"
    patterns = ("nm",)
    dtypes = ("fp16",)
    needs_capability = (9, 0)
    portable = "cuda_nm_sparselt"

    def pattern_check(self, pattern) -> str | None:
        if (pattern.n, pattern.m) != (2, 4):
            return f"{self.name} handles 2:4, not {pattern.n}:{pattern.m}"
        return None

    def supports(self, pattern, K, N, dtype):
        return (super().supports(pattern, K, N, dtype) or self.pattern_check(pattern)
                or hopper_supports(self, pattern, K, N, dtype, k_rows=True))

    def tile_candidates(self, pattern, K, N, dtype):
        return list(CANDIDATES)

    def geometry(self, spec):
        """(NWG, BM, KS, STAGES, INFLIGHT, RS); missing trailing fields are 0."""
        t = tuple(spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0])
        if not 4 <= len(t) <= 6:
            raise ValueError(f"{self.name}: tile {t}: (NWG, BM, KS, STAGES[, INFLIGHT[, RS]]) expected")
        t = t + (0,) * (6 - len(t))
        nwg, bm, ks, st = t[:4]
        if nwg not in (1, 2, 3, 4) or bm % 32 or not 64 <= bm <= 256 or ks not in (64, 128) or st < 2 or \
                self.smem_bytes(t) > 227 * 1024 or self.regs(bm) * 128 * nwg > 65536:
            raise ValueError(f"{self.name}: tile {t}: NWG 1 to 4, BM a multiple of 32 from 64 to 256, KS 64 or 128, "
                             f"STAGES >= 2, within 227 KB of shared memory and the registers of one SM")
        return t

    @staticmethod
    def smem_bytes(t) -> int:
        nwg, bm, ks, st = t[:4]
        stage = -(-(nwg * ks // 2 * 128 + ks // 64 * bm * 128 + nwg * ks // 32 * 256) // 1024) * 1024
        return max(st * stage, bm * 64 * nwg * 2) + 1024

    @staticmethod
    def regs(bm: int) -> int:
        """Registers a thread needs: its BM / 2 accumulators and ~48 more."""
        return min(255, -(-(bm // 2 + 48) // 8) * 8)

    def ctas_per_sm(self, t) -> int:
        """As many CTAs as 228 KB of shared memory and the SM's 64K registers hold."""
        nwg, bm = t[:2]
        return max(1, min(228 * 1024 // (self.smem_bytes(t) + 1024), 65536 // (128 * nwg * self.regs(bm))))

    def fallback_spec(self, spec):
        return dataclasses.replace(spec, family=self.portable, tile=())

    def render(self, spec, packed):
        t = self.geometry(spec)
        nwg, bm, ks, st, inf, rs = t
        fb = self.fallback_spec(spec)
        fb_name, fb_text = embedded_fallback(spec, fb, packed)
        ctx = base_ctx(spec, packed)
        ctx.update(NWG=nwg, BM=bm, KS=ks, STAGES=st, INFLIGHT=inf, RS=rs, MINB=self.ctas_per_sm(t),
                   FALLBACK=fb_name, FALLBACK_FAMILY=fb.family, COVER=False)
        ctx.update(self.extra_ctx(spec, packed, t))
        return source(spec, render_template("cuda_nm_wgmma.cu.j2", **ctx) + "\n" + fb_text)

    def extra_ctx(self, spec, packed, t) -> dict:
        return {}

    def cost(self, spec, packed, M):
        """Wave model: CTAs (64 NWG columns x BM rows, all of K) share the SMs' slots at a per-SM rate of
        dense-equivalent work; the bytes moved bound it from below."""
        t = self.geometry(spec)
        nwg, bm = t[:2]
        per_sm = self.ctas_per_sm(t)
        t_cta = 2.0 * 64 * nwg * bm * spec.K / (NM_WGMMA_SM_RATE / per_sm)
        ctas = -(-spec.N // (64 * nwg)) * -(-M // bm)
        t_gemm = max(ctas * t_cta / (H200_SMS * per_sm), t_cta)
        byts = 2 * (M * spec.K + M * spec.N * (2 if spec.epilogue.residual else 1)) + packed.values.nbytes
        return LAUNCH + max(t_gemm, byts / BW)


def cover_tables(K: int, N: int, col_ptr, row_idx, KS: int, BN: int) -> dict:
    """The 2:4 cover of an unstructured [K, N] weight given as CSC (``col_ptr``, ``row_idx``, rows ascending in each
    column): in every group of 4 along K of column n, its first two non-zeros go to the cover's two slots (the
    other offsets fill the slots left, with zeros); the rest is the overflow. Returns
    ``idx`` [K/2, N] (the slots' offsets, ascending, distinct); ``dst`` per CSC entry: ``(2 g + slot) * N + n`` in
    the cover, ``-1 - j`` for the overflow entry in word j of ``ovf_meta``. The overflow of each (column tile of BN,
    k-step of KS) is a slice of ``slice`` words of ``ovf_meta`` (tile-major): the starts of its BN / 2 thread quads'
    entries and the end (``qw`` words with padding; quad q of a tile holds columns 16 (q // 8) + q % 8 and that + 8),
    then the entries ordered by (quad, column, k): ``(k within the step) << 16 | (the quad's second column) << 24``
    (the kernel puts the fp16 value in the low 16 bits). ``maxov``: the most entries of one (tile, step)."""
    col_ptr, row_idx = np.asarray(col_ptr, np.int64), np.asarray(row_idx, np.int64)
    nnz, G = row_idx.size, K // 4
    cols = np.repeat(np.arange(N), np.diff(col_ptr))
    grp, off = row_idx // 4, row_idx % 4
    key = cols * G + grp
    first = np.r_[True, key[1:] != key[:-1]] if nnz else np.zeros(0, bool)
    rank = np.arange(nnz) - np.maximum.accumulate(np.where(first, np.arange(nnz), 0))
    cov = rank < 2
    occ = np.zeros((G, 4, N), bool)
    occ[grp[cov], off[cov], cols[cov]] = True
    need = 2 - occ.sum(axis=1)
    for o in range(4):  # pad with the lowest free offsets
        add = ~occ[:, o, :] & (need > 0)
        occ[:, o, :] |= add
        need -= add
    slots = np.argsort(~occ, axis=1, kind="stable")[:, :2, :]  # [G, 2, N]: the two offsets, ascending
    dst = np.empty(nnz, np.int64)
    slot = (slots[grp[cov], 1, cols[cov]] == off[cov]).astype(np.int64)
    dst[cov] = (2 * grp[cov] + slot) * N + cols[cov]
    nsteps, ntiles, nq = -(-K // KS), -(-N // BN), BN // 2
    ov = np.nonzero(~cov)[0]
    c = cols[ov] % BN  # column within the tile; its quad of threads: (c // 16) * 8 + c % 8, row c % 16 >= 8
    quad = (c // 16) * 8 + c % 8
    cell = ((cols[ov] // BN) * nsteps + row_idx[ov] // KS) * nq + quad
    order = np.lexsort((row_idx[ov], c, cell))
    ov, c, cell = ov[order], c[order], cell[order]
    counts = np.bincount(cell, minlength=ntiles * nsteps * nq).reshape(ntiles * nsteps, nq)
    per_step = counts.sum(axis=1)
    maxov = int(per_step.max()) if per_step.size else 0
    qw = -(-(nq + 1) // 4) * 4  # the quads' starts, then the entries: one slice of sl words per (tile, step)
    sl = qw + -(-maxov // 4) * 4
    meta = np.zeros(ntiles * nsteps * sl, np.int64)
    starts = np.concatenate([np.zeros((ntiles * nsteps, 1), np.int64), np.cumsum(counts, axis=1)], axis=1)
    meta[(np.arange(ntiles * nsteps)[:, None] * sl + np.arange(nq + 1)[None, :]).reshape(-1)] = starts.reshape(-1)
    step_cell = cell // nq
    first = np.r_[0, np.cumsum(per_step)][:-1]
    pos = step_cell * sl + qw + (np.arange(ov.size) - first[step_cell])
    dst[ov] = -1 - pos
    meta[pos] = ((row_idx[ov] % KS) << 16) | (((c % 16) >= 8).astype(np.int64) << 24)
    return {"idx": slots.reshape(G * 2, N).astype(np.uint8), "dst": dst, "maxov": maxov, "slice": sl, "qw": qw,
            "ovf_meta": meta, "nov": int(ov.size)}


COVER_STEP_FACTOR = 1.3
COVER_ENTRY_ROW_S = 6.7e-13


@register_family
class CudaCoverWgmma(CudaNmWgmma):
    """Unstructured fp16 on Hopper sparse wgmma: a 2:4 cover plus an overflow list (portable fallback: cuda_csr).

    At 90% random sparsity only 0.37% of the groups of 4 along K hold more than two non-zeros (binomial), so
    the cover carries all but ~0.1% of the weight's elements on the sparse tensor cores at the 2:4 kernel's
    speed, and the overflow costs a few shared-memory reads per k-step. The cover's values are scattered from
    the CSC values (the unstructured pattern's one packed format) on the first call."""
    name = "cuda_cover_wgmma"
    patterns = ("unstructured",)
    portable = "cuda_csr"

    def pattern_check(self, pattern):
        return None

    def geometry(self, spec):
        t = super().geometry(spec)
        if t[4]:
            raise ValueError(f"{self.name}: tile {t}: no in-flight form (the overflow adds into the accumulators "
                             f"after each k-step's wgmma)")
        return t

    def tile_candidates(self, pattern, K, N, dtype):
        """The 2:4 kernel's tiles in their waited-each-step form; 3 x 128 x 128 first (session 5's H200 sweep)."""
        return list(dict.fromkeys([(3, 128, 128, 3, 0, 0)] + [t[:4] + (0,) + t[5:] for t in CANDIDATES]))

    def tables(self, spec, packed, t):
        return cover_tables(spec.K, spec.N, packed.tables["col_ptr"], packed.tables["row_idx"], t[2], 64 * t[0])

    def unbuildable(self, spec, packed, t, c) -> str | None:
        """Why this weight's cover cannot be built at tile t (None: it can): more overflow entries per k-step than fit in shared memory beside the stages (dense-ish weights); ``c`` are its
        cover tables at that tile."""
        smem = self.smem_bytes(t) + t[3] * (4 * c["slice"] + 1024)  # (+ stage rounding)
        if smem > 227 * 1024:
            return (f"{self.name}: tile {t}: {c['maxov']} overflow entries per k-step do not fit in shared memory "
                    f"beside the stages")
        return None

    def extra_ctx(self, spec, packed, t):
        if packed.nnz > MAX_BAKED_NNZ:
            raise ValueError(f"{self.name}: {packed.nnz} non-zeros is over the {MAX_BAKED_NNZ} baked-table limit")
        c = self.tables(spec, packed, t)
        why = self.unbuildable(spec, packed, t, c)
        if why:
            raise ValueError(why)
        return dict(COVER=True, nov=c["nov"], maxov=c["maxov"], slice=c["slice"], qw=c["qw"], dst=fmt_array(c["dst"]),
                    ovf_meta=fmt_array(c["ovf_meta"]), idx_hex=hex_lines(c["idx"], 2))

    def cost(self, spec, packed, M):
        """The 2:4 kernel's wave model, 1.3x for the per-step overflow pass, plus 0.67 ps per overflow entry and row
        of X (fitted to session 5's H200 runs, bench/cuda/s5/cover-v3: 12.9 us at (4096, 768, 768), 41.0 at
        (4096, 768, 3072), 50.4 at (4096, 3072, 768), 90% sparse; 33.7 us at (4096, 768, 768), 75%). Session 6's
        slices per k-step (bench/cuda/s6/run8-v3b: 12.1, 39.0, 47.2 us) are within 0.83-1.07x of it."""
        t = self.geometry(spec)
        if packed.nnz > MAX_BAKED_NNZ:
            return float("inf")
        c = self.tables(spec, packed, t)
        if self.unbuildable(spec, packed, t, c):
            return float("inf")  # (never chosen where it cannot be built)
        return COVER_STEP_FACTOR * super().cost(spec, packed, M) + c["nov"] * M * COVER_ENTRY_ROW_S
