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


def cover_tables(K: int, N: int, col_ptr, row_idx, KS: int, NWG: int, NEXT: int = 64) -> dict:
    """The 2:4 cover of an unstructured [K, N] weight given as CSC (``col_ptr``, ``row_idx``, rows ascending in each
    column), and its extension. In every group of 4 along K of column n, its first two non-zeros go to the cover's
    two slots (the other offsets fill the slots left, with zeros); the rest is the overflow. ``idx`` [K/2, N]: the
    cover's offsets (ascending, distinct); ``dst`` per CSC entry: ``(2 g + slot) * N + n`` in the cover's [K/2, N]
    values, ``-1 - j`` for element j of the extension's values.

    The extension carries the overflow on the sparse tensor cores too. The k-steps (KS each) are cut into segments
    (the first ``first`` steps, then ``seg`` each); for each column tile of BN = 64 NWG, warpgroup w (its 64 columns)
    and segment, the distinct k of the overflow there get positions 0, 1, ... < NEXT of an extra operand, so that
    no column has more than two entries in one group of 4 positions (a k is moved to the next group when one
    would): a 2:4 weight ``[NEXT / 2, 64]`` per (tile, segment, warpgroup) (the extension's values, in that order,
    ``dst`` into it) with its offsets ``xidx`` [tiles, segments, NWG, NEXT / 4, 2, 64]. While the main loop runs,
    the kernel copies column k of each step's X tile to position p of its warpgroup's gathered tile (copy tasks per
    (tile, step): ``tasks`` slices of ``4 + maxt`` words, the count first, then ``k | w << 7 | p << 9``), and after
    each segment adds gathered tile x extension with NEXT / 32 more wgmma.sp. ``nseg``, ``seg``, ``first``: the
    segments (the fewest whose positions fit in NEXT); ``nov``: overflow entries."""
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
    BN, nsteps, ntiles = 64 * NWG, -(-K // KS), -(-N // (64 * NWG))
    ov = np.nonzero(~cov)[0]
    ovk, ovn = row_idx[ov], cols[ov]
    fits = False
    for seg in [nsteps] + list(range((nsteps - 1) // 2 * 2, 1, -2)):  # the fewest segments whose positions fit
        nseg = -(-nsteps // seg)  # (segments after the first: an even step count, seg)
        fst = nsteps - (nseg - 1) * seg
        segof = np.where(ovk // KS < fst, 0, 1 + (ovk // KS - fst) // seg)
        cell = ((ovn // BN) * nseg + segof) * NWG + (ovn % BN) // 64
        order = np.lexsort((ovn, ovk, cell))
        pos = np.empty(ov.size, np.int64)
        fits = True
        for c in np.unique(cell):
            sel = order[cell[order] == c]
            used: dict[tuple[int, int], int] = {}  # (column, group of 4 positions) -> entries
            p, i = 0, 0
            while i < sel.size:
                j = i
                while j < sel.size and ovk[sel[j]] == ovk[sel[i]]:
                    j += 1
                cs = [int(n) for n in ovn[sel[i:j]]]
                while any(used.get((n, p // 4), 0) >= 2 for n in cs):
                    p = (p // 4 + 1) * 4
                for n in cs:
                    used[(n, p // 4)] = used.get((n, p // 4), 0) + 1
                pos[sel[i:j]] = p
                p, i = p + 1, j
            if p > NEXT:
                fits = False
                break
        if fits:
            break
    if not fits:
        raise ValueError(f"cover: the overflow of one warpgroup and k-step pair does not fit in {NEXT} positions")
    ncell = ntiles * nseg * NWG
    # the extension's offsets and values: per cell, group q of 4 positions, column c: its entries' offsets
    xocc = np.zeros((ncell, NEXT // 4, 4, 64), bool)
    col64 = ovn % 64
    xocc[cell, pos // 4, pos % 4, col64] = True
    xneed = 2 - xocc.sum(axis=2)
    xs = xocc.copy()
    for o in range(4):
        add = ~xs[:, :, o, :] & (xneed > 0)
        xs[:, :, o, :] |= add
        xneed -= add
    xidx = np.argsort(~xs, axis=2, kind="stable")[:, :, :2, :]  # [cell, q, 2, 64]
    xslot = (xidx[cell, pos // 4, 1, col64] == pos % 4).astype(np.int64)
    dst[ov] = -1 - ((cell * (NEXT // 2) + 2 * (pos // 4) + xslot) * 64 + col64)
    # copy tasks per (tile, step): each distinct (warpgroup, k) of the step's overflow, to its position
    step_ = ovk // KS
    tkey = (((ovn // BN) * nsteps + step_) * NWG + (ovn % BN) // 64) * K + ovk
    _, first_t = np.unique(tkey, return_index=True)
    t_tile, t_step, t_w = ovn[first_t] // BN, step_[first_t], (ovn[first_t] % BN) // 64
    t_word = (ovk[first_t] % KS) | (t_w << 7) | (pos[first_t] << 9)
    tcell = t_tile * nsteps + t_step
    tcount = np.bincount(tcell, minlength=ntiles * nsteps)
    maxt = max(4, -(-int(tcount.max(initial=0)) // 4) * 4)
    sl = 4 + maxt
    tasks = np.zeros(ntiles * nsteps * sl, np.int64)
    tasks[np.arange(ntiles * nsteps) * sl] = tcount
    o2 = np.argsort(tcell, kind="stable")
    tstart = np.r_[0, np.cumsum(tcount)][:-1]
    rk = np.arange(o2.size) - tstart[tcell[o2]]
    tasks[tcell[o2] * sl + 4 + rk] = t_word[o2]
    return {"idx": slots.reshape(G * 2, N).astype(np.uint8), "dst": dst, "nov": int(ov.size), "nseg": nseg,
            "seg": seg, "first": fst, "xidx": xidx.astype(np.uint8), "tasks": tasks, "maxt": maxt, "next": NEXT}


# the cover's time: the 2:4 kernel's at the same tile, plus the extension (NEXT / 2 more compressed rows per
# segment, at the same rate) and the copies: COVER_COPY_S per copied element (k, row) on one SM. Fitted to the
# H200 (bench/NOTES-cuda.md, session 6).
COVER_COPY_S = 1.0e-12
COVER_NEXT = 64


def cover_xmeta(xidx) -> np.ndarray:
    """The extension's wgmma metadata words [cells, NEXT / 32, 64] from its offsets ``xidx`` [cells, NEXT / 4, 2, 64]:
    as the main loop's (CuTe's ELayout_64x32): word s of k32 step j holds rows n = 16 (s // 16) + (s % 16) // 2 (bits
    0-15) and n + 8 (bits 16-31), groups 8 j + 4 (s % 2) .. +4, 4 bits per group (first offset low)."""
    cells, q = xidx.shape[:2]
    s = np.arange(64)
    n = 16 * (s // 16) + (s % 16) // 2
    nib = lambda g, col: xidx[:, g, 0, col].astype(np.uint32) | (xidx[:, g, 1, col].astype(np.uint32) << 2)  # noqa: E731
    out = np.zeros((cells, q // 8, 64), np.uint32)
    for j in range(q // 8):
        for c in range(4):
            g = 8 * j + 4 * (s % 2) + c
            out[:, j, :] |= (nib(g, n) << (4 * c)) | (nib(g, n + 8) << (16 + 4 * c))
    return out


@register_family
class CudaCoverWgmma(CudaNmWgmma):
    """Unstructured fp16 on Hopper sparse wgmma: a 2:4 cover plus an extension for the rest (portable fallback:
    cuda_csr).

    At 90% random sparsity only 0.37% of the groups of 4 along K hold more than two non-zeros (binomial), so the
    cover carries all but ~1% of the weight's non-zeros on the sparse tensor cores at the 2:4 kernel's speed. The
    rest (the overflow) runs there too: the X columns it needs are copied, while the main loop's wgmma runs, from
    each stage into a gathered tile per warpgroup, and a few more wgmma.sp per segment of k-steps multiply them by
    a small 2:4 weight (``cover_tables``). The cover's and the extension's values are scattered from the CSC values
    (the unstructured pattern's one packed format) on the first call."""
    name = "cuda_cover_wgmma"
    patterns = ("unstructured",)
    portable = "cuda_csr"

    def pattern_check(self, pattern):
        return None

    def tile_candidates(self, pattern, K, N, dtype):
        """The 2:4 kernel's tiles that leave room for the gathered tiles (BM up to 128)."""
        return [t for t in CANDIDATES if t[1] <= 128]

    def tables(self, spec, packed, t):
        return cover_tables(spec.K, spec.N, packed.tables["col_ptr"], packed.tables["row_idx"], t[2], t[0], COVER_NEXT)

    @staticmethod
    def cover_smem(t, c) -> int:
        """Shared memory of tile t with cover tables c: the stages (each with its copy tasks and room for a segment's
        extension values and metadata) and the gathered tiles."""
        nwg, bm, ks, st = t[:4]
        nx = c["next"] if c["nov"] else 0
        main = -(-(nwg * ks // 2 * 128 + ks // 64 * bm * 128 + nwg * ks // 32 * 256) // 1024) * 1024
        stage = -(-(main + nwg * nx // 2 * 128 + nwg * nx // 32 * 256 + 16 + 4 * c["maxt"]) // 1024) * 1024
        return max(st * stage, bm * 64 * nwg * 2) + nwg * nx // 64 * bm * 128 + 1024

    def unbuildable(self, spec, packed, t, c) -> str | None:
        """Why this weight's cover cannot be built at tile t (None: it can): its copy tasks and gathered tiles do
        not fit in shared memory beside the stages (dense-ish weights); ``c`` are its cover tables (None: the
        overflow of one warpgroup and segment of one step does not fit in the extension)."""
        if c is None:
            return f"{self.name}: tile {t}: the overflow of one warpgroup and k-step does not fit in the extension's {COVER_NEXT} columns"
        if self.cover_smem(t, c) > 227 * 1024:
            return (f"{self.name}: tile {t}: the overflow ({c['maxt']} copy tasks per k-step, {c['nseg']} segment(s)) "
                    f"does not fit in shared memory beside the stages")
        return None

    def _tables_or_none(self, spec, packed, t):
        try:
            return self.tables(spec, packed, t)
        except ValueError:
            return None

    def extra_ctx(self, spec, packed, t):
        if packed.nnz > MAX_BAKED_NNZ:
            raise ValueError(f"{self.name}: {packed.nnz} non-zeros is over the {MAX_BAKED_NNZ} baked-table limit")
        c = self._tables_or_none(spec, packed, t)
        why = self.unbuildable(spec, packed, t, c)
        if why:
            raise ValueError(why)
        nx = c["next"] if c["nov"] else 0
        xm = cover_xmeta(c["xidx"]) if nx else np.zeros(0, np.uint32)
        return dict(COVER=True, nov=c["nov"], next=nx, nseg=c["nseg"], seg=c["seg"], first=c["first"],
                    maxt=c["maxt"], dst=fmt_array(c["dst"]), tasks=fmt_array(c["tasks"]),
                    xmeta=fmt_array(xm.reshape(-1)), xmeta_n=int(xm.size), idx_hex=hex_lines(c["idx"], 2))

    def cost(self, spec, packed, M):
        """The 2:4 kernel's wave model over K plus the extension's k, and the copies (fitted to the H200)."""
        t = self.geometry(spec)
        if packed.nnz > MAX_BAKED_NNZ:
            return float("inf")
        c = self._tables_or_none(spec, packed, t)
        if self.unbuildable(spec, packed, t, c):
            return float("inf")  # (never chosen where it cannot be built)
        ext = c["nseg"] * c["next"] if c["nov"] else 0
        base = super().cost(spec, packed, M) * (spec.K + ext) / spec.K
        copies = int(c["tasks"][::4 + c["maxt"]].sum()) * M * COVER_COPY_S / H200_SMS
        return base + copies
