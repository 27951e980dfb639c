"""Hopper's sparse tensor cores (``wgmma.mma_async.sp``, template ``cuda_nm_wgmma.cu.j2``): ``cuda_nm_wgmma`` for 2:4
weights and ``cuda_cover_wgmma`` for unstructured ones (a pair-permuted 2:4 cover, below). On by default
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
than the L2). The cover adds FORM (``cuda_cover_wgmma.geometry``).
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
# the epilogue's activation on CUDA cores, per output element over the whole GPU (after the tensor cores' work, so it
# adds): GELU 3.0 us at (4096, 1536, 384) and 6.8 at (4096, 3072, 768) with the exp2-and-reciprocal form
# (cuda_common.cuh.j2), the tanh form 1.9 at (4096, 1536, 384) (H200, bench/cuda/s17/run2-gelu)
ACT_ELEMENT_S = {"gelu": 5e-13, "gelu_tanh": 3e-13}

# the best tiles of session 5's H200 sweep first: 3 warpgroups x 128 rows (one wave of 128 CTAs at N = 768) at
# (4096, 768, 768) 1.24x and (4096, 768, 3072) 1.09x; 4 x 128 at (4096, 3072, 768) 1.20x; 2 x 256 rastered at
# 8192^3; then the runners-up. 3 x 128 x 128 waited each step is the best at (4096, 768, 3072) in session 9's A/B
# (bench/cuda/s9/run3-nm128: 21.5 us = 1.22x against 22.8 for the first tile), for the natural cover too.
CANDIDATES = [(3, 128, 64, 4, 1, 0), (3, 128, 128, 3, 0, 0), (4, 128, 64, 4, 1, 0), (2, 256, 64, 3, 1, 8),
              (3, 128, 128, 3, 1, 0), (2, 96, 64, 4, 1, 0), (4, 96, 64, 4, 1, 0), (2, 128, 64, 4, 0, 0)]


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
        return self._geometry(spec, 6)

    def _geometry(self, spec, fields: int):
        t = tuple(spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0])
        if not 4 <= len(t) <= fields:
            raise ValueError(f"{self.name}: tile {t}: (NWG, BM, KS, STAGES[, INFLIGHT[, RS"
                             f"{'[, FORM]' if fields == 7 else ''}]]) expected")
        t = t + (0,) * (fields - len(t))
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
        nwg, bm, ks, st, inf, rs = t[:6]
        fb = self.fallback_spec(spec)
        fb_name, fb_text = embedded_fallback(spec, fb, packed)
        ctx = base_ctx(spec, packed)
        ctx.update(NWG=nwg, BM=bm, KS=ks, STAGES=st, INFLIGHT=inf, RS=rs, MINB=self.ctas_per_sm(t),
                   FALLBACK=fb_name, FALLBACK_FAMILY=fb.family, COVER=False, XPERM=False, KW=spec.K, EXT=0)
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
        return LAUNCH + max(t_gemm, byts / BW) + ACT_ELEMENT_S.get(spec.epilogue.activation, 0.0) * M * spec.N


PANEL = 64  # k per panel of the cover's pair permutation: one 128-byte swizzled row of X's tile


def pair_up(adj: list[int], P: int, rng, tries: int = 8) -> tuple[list[int], int]:
    """An order of P pairs (P even) in which each two consecutive ones (2 g, 2 g + 1) are compatible (bit q of
    ``adj[p]``) wherever possible: greedy, the pair with the fewest compatible partners left first, matched to its
    partner with the fewest; random tie-breaks on retries. Returns (order, pairs left unmatched)."""
    best: tuple[list[int], int] | None = None
    for t in range(tries):
        order = list(range(P)) if t == 0 else [int(x) for x in rng.permutation(P)]
        un, groups, left = (1 << P) - 1, [], []
        while un:
            u = min((p for p in order if un >> p & 1), key=lambda p: (adj[p] & un).bit_count())
            un &= ~(1 << u)
            cand = adj[u] & un
            if not cand:
                left.append(u)
                continue
            v = min((q for q in order if cand >> q & 1), key=lambda q: (adj[q] & un).bit_count())
            un &= ~(1 << v)
            groups += [u, v]
        if best is None or len(left) < best[1]:
            best = (groups + left, len(left))
        if not left:
            break
    return best


def _rank_k(cols, kp) -> np.ndarray:
    """Each entry's rank, in k order, among the entries of its column in its group of 4 (kp // 4)."""
    n = cols.size
    order = np.lexsort((kp, cols))
    key = (cols * (int(kp.max(initial=0)) // 4 + 1) + kp // 4)[order]
    first = np.r_[True, key[1:] != key[:-1]] if n else np.zeros(0, bool)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    return rank


def cover_tables(K: int, N: int, col_ptr, row_idx, KS: int, BN: int, natural: bool = False,
                 extend: bool = False) -> dict:
    """The pair-permuted 2:4 cover of an unstructured [K, N] weight given as CSC (``col_ptr``, ``row_idx``).
    With ``natural``, the cover in k's own order (no pair order: X is loaded 16 bytes at a time), for weights
    that are 2:4 in natural groups but for a few entries (e.g. after the transform stage's K permutation).

    In every column tile of BN and 64-k panel, the panel's 32 pairs of k (k, k + 1) are reordered so that each
    two consecutive slots (a group of 4 of the permuted k) hold at most two non-zeros in every column of the
    tile (``pair_up``; at 90% random sparsity such an order exists for nearly every (tile, panel)). The kernel
    loads X's pairs in that order, so the cover is exact on the sparse tensor cores; the non-zeros past two in a
    permuted group (none, mostly) are the residual, added in the epilogue from X in global memory.

    Returns ``xperm`` [ceil(N / BN), NSTEPS * KS / 64, 32] (uint8: the pair each slot loads; slots past K keep
    their own pair, which the kernel reads as zeros); ``idx`` [K/2, N] (the two kept offsets of every permuted
    group, ascending, distinct); ``dst`` per CSC entry: ``(2 g + slot) * N + n`` in the cover (g a permuted
    group), or ``-1 - j`` for residual entry j; ``res_start`` [ceil(N / BN) + 1] (each tile's residual entries,
    by column, then k); ``res_slot`` [ceil(N / BN) * BN] (per column of each tile: its number among the tile's
    columns with residual entries, in order, or -1) and ``res_words`` [2 nres]: entry j is (k, its column's
    slot), the kernel adds the fp16 value in bits 16-31 of the second word.

    With ``extend`` (natural form only), the residual goes on the tensor cores too: each column tile's 8-k chunks of
    X that hold residual entries are loaded once more, in ``esteps`` extra k-steps after K's own (``ext``
    [ceil(N / BN), esteps * KS / 8]: the chunk each 16-byte piece of an extra step loads, -1 for none), and each
    residual entry moves to its chunk's copy, at the same place in its group of 4. A group of 4 holds at most four
    entries of a column, two of which its cover keeps, so the copy's group takes the rest: nothing is left
    (``nres`` 0). The cover then spans ``KW`` = (ceil(K / KS) + esteps) * KS rows (``idx`` [KW/2, N], ``dst`` in
    [KW/2, N]); rows from K to ceil(K / KS) * KS are zeros."""
    col_ptr, row_idx = np.asarray(col_ptr, np.int64), np.asarray(row_idx, np.int64)
    nnz, G = row_idx.size, K // 4
    if extend and K // 8 > 32767:
        raise ValueError(f"the extra steps' chunk table holds 16-bit chunk numbers: K = {K} is over 262136")
    cols = np.repeat(np.arange(N), np.diff(col_ptr))
    ntiles, npan = -(-N // BN), -(-K // KS) * (KS // PANEL)
    tile, c = cols // BN, cols % BN
    pan, pair = row_idx // PANEL, (row_idx % PANEL) // 2
    inv = np.tile(np.arange(32, dtype=np.int64), (ntiles, npan, 1))
    rng = np.random.default_rng(0)
    bits = np.int64(1) << np.arange(32, dtype=np.int64)
    for t in range(0 if natural else ntiles):
        sel = tile == t
        cnt = np.zeros((npan, 32, BN), np.float32)  # non-zeros per (panel, pair, column)
        np.add.at(cnt, (pan[sel], pair[sel], c[sel]), 1.0)
        two, one = (cnt == 2).astype(np.float32), (cnt >= 1).astype(np.float32)
        bad = (two @ one.transpose(0, 2, 1) + one @ two.transpose(0, 2, 1)) > 0  # a column would get 3 or 4
        adj = ((~bad) * bits).sum(axis=2)
        for q in range(-(-K // PANEL)):
            P = min(32, (K - q * PANEL) // 2)
            order, _ = pair_up([int(a) & ((1 << P) - 1) & ~(1 << p) for p, a in enumerate(adj[q, :P])], P, rng)
            inv[t, q, order] = np.arange(P)
    kp = pan * PANEL + 2 * inv[tile, pan, pair] + row_idx % 2  # each non-zero's permuted k
    cov = _rank_k(cols, kp) < 2
    ext, esteps = np.zeros((ntiles, 0), np.int64), 0
    if extend and natural and not cov.all():
        nxs = -(-K // KS)
        res = np.nonzero(~cov)[0]
        span = K // 8 + 1
        ukey, where = np.unique(tile[res] * span + kp[res] // 8, return_inverse=True)
        ut, uc = ukey // span, ukey % span  # each tile's chunks with residual entries, in order
        pos = np.arange(ukey.size) - np.searchsorted(ut, ut)  # a chunk's place among its tile's
        esteps = -(-int(np.bincount(ut, minlength=ntiles).max()) * 8 // KS)
        ext = np.full((ntiles, esteps * KS // 8), -1, np.int64)
        ext[ut, pos] = uc
        kp[res] = nxs * KS + 8 * pos[where] + kp[res] % 8
        G = (nxs + esteps) * KS // 4
        cov = _rank_k(cols, kp) < 2
        assert cov.all(), "a chunk's copy holds at most two entries past its group's two in every column"
    grp, off = kp // 4, kp % 4
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
    res = np.nonzero(~cov)[0]
    res = res[np.lexsort((row_idx[res], c[res], tile[res]))]
    dst[res] = -1 - np.arange(res.size)
    rt, rc = tile[res], c[res]
    res_start = np.r_[0, np.cumsum(np.bincount(rt, minlength=ntiles))]
    # each tile's residual columns in order, numbered from 0 (the entry's slot)
    col = rt * BN + rc
    new_col = np.r_[True, col[1:] != col[:-1]] if res.size else np.zeros(0, bool)
    ucol = np.cumsum(new_col) - 1
    first = ucol[res_start[:-1].clip(max=max(res.size - 1, 0))] if res.size else np.zeros(ntiles, np.int64)
    slot = ucol - first[rt] if res.size else np.zeros(0, np.int64)
    res_slot = np.full(ntiles * BN, -1, np.int64)
    res_slot[col] = slot
    return {"idx": slots.reshape(G * 2, N).astype(np.uint8), "dst": dst,
            "xperm": np.argsort(inv, axis=2).astype(np.uint8), "res_start": res_start, "res_slot": res_slot,
            "res_words": np.stack([row_idx[res], slot], axis=1).reshape(-1), "nres": int(res.size),
            "natural": natural, "ext": ext, "esteps": esteps, "KW": 4 * G}


# the cover's time over the 2:4 kernel's at its tile (4-byte loads of X's permuted pairs instead of 16-byte ones:
# 11.4 / 7.5 us, 35.0 / 22.3, 41.9 / 26.9 at the BERT shapes; H200, bench/cuda/s7/run7-ws-fixed)
COVER_STEP_FACTOR = 1.5
# The residual, per entry and row of a CTA's tile: the CTA's threads share its tile's (entry, row) pairs and sum
# them per column in shared memory, so a CTA's residual takes its entries x BM x this, X read from global memory
# (the L2) or, in the natural cover for k in the last STAGES k-steps, from a stage still in shared memory. Fitted to
# the H200 (bench/cuda/s16/run3-words-shuffled): 56, 78 and 186 entries from the stages, all in one column (an
# outlier feature), cost 3.0, 4.0 and 9.2 us over the same kernel without them at BM 128 (50 ns per entry and CTA);
# a random weight with K as given in k's own order (137 entries per tile, two thirds from global memory) 17.6 us.
# Until session 16 each warp added its own columns' entries one after another (the same outlier weights: 12.7,
# 17.6 and 46.8 us; MiniLM's outlier columns, bench/gpu/s15/run6-minilm-real).
COVER_CTA_ENTRY_ROW_S = 1.33e-9
COVER_CTA_TAIL_ROW_S = 3.9e-10
# An extra k-step (the residual's chunks of X loaded again, FORM 3), per 64 k of it and wave of CTAs: MiniLM's
# trained weights as conversion orders them (H200, bench/cuda/s17/run4-ext-ab, against the same shapes without a
# residual): FFN1 (4096, 1536, 384) 2 steps of 64 x 2 waves +2.5 us (3 x 2 at 3 x 128 x 64: +3.2), the attention
# output (4096, 384, 384) 4 x 1 +1.6, FFN2 (4096, 384, 1536) 4 x 1 +2.7 and 16 x 1 +9.7; random weights with K as
# given, every chunk again in steps of 128 (run5-bert-forms): +7.4 us at (4096, 768, 768) (6 x 2 x 1), +20.6 at
# (4096, 3072, 768) (6 x 2 x 3), +28.6 at (4096, 768, 3072) (24 x 2 x 1), where the pair order costs less. Where
# the order leaves hundreds of entries past two in a few chunks, this is 1.4x to 2x faster than adding them.
COVER_EXT_STEP_S = 5.5e-7
# The same runs, the residual instead (FORM 1): the entries spread over many columns cost more than crowded in one
# (each column a slot of the partial sums, taken in chunks with barriers between): ~1.8 ns per slot and row of a
# CTA more, and ~1.5 us for any residual at all (4 entries: +2.0 us at FFN1)
COVER_RES_SLOT_ROW_S = 1.8e-9
COVER_RES_FIXED_S = 1.5e-6
# the residual's partial sums in shared memory: columns (slots) per chunk, at most and at least (fits())
MAX_SLOTS, MIN_SLOTS = 64, 4


@register_family
class CudaCoverWgmma(CudaNmWgmma):
    """Unstructured fp16 on Hopper sparse wgmma: a pair-permuted 2:4 cover (portable fallback: cuda_csr).

    At 90% random sparsity 0.37% of the groups of 4 along K hold more than two non-zeros, enough that every
    k-step of a CTA meets a few. Reordering the pairs of k inside each 64-k panel, per column tile (``pair_up``),
    removes them: each group of 4 then holds at most two non-zeros in every column, and the kernel is the 2:4
    kernel with X's tile loaded 4 bytes (one pair) at a time in that order. The cover's values are scattered from
    the CSC values (the unstructured pattern's one packed format) on the first call.

    A weight that is 2:4 in k's own groups but for a few entries (the transform stage reorders K where the graph
    allows it, transform/permute.py) takes the natural form instead: X loaded 16 bytes at a time as in the 2:4
    kernel, the few entries added after the main loop: X read from the stages still in shared memory for k in the
    last STAGES k-steps (where the transform stage's order puts them), from global memory before. In either form
    every thread of the CTA takes a share of its tile's (entry, row) pairs, summed in a shared-memory buffer per
    column, so entries crowded into one column (an outlier feature of trained weights) are not one warp's work.

    Or (FORM 3) the natural form runs those entries on the tensor cores too: each column tile's 8-k chunks of X that
    hold them are loaded once more in extra k-steps after K's own, the entries in the copies' groups of 4
    (``cover_tables(extend=True)``). Where the transform stage's order leaves them in its last rows (a few chunks),
    that costs one or two steps and beats adding them, by 1.3x to 1.9x on MiniLM's trained weights."""
    name = "cuda_cover_wgmma"
    patterns = ("unstructured",)
    portable = "cuda_csr"

    def pattern_check(self, pattern):
        return None

    def geometry(self, spec):
        """(NWG, BM, KS, STAGES, INFLIGHT, RS, FORM): the 2:4 kernel's tile, and the cover's form: 0 as the cost
        model chooses, 1 k's own order, 2 the pair order, 3 k's own order with the residual's chunks of X loaded
        again in extra k-steps (``cover_tables(extend=True)``; tests and benchmarks pin it)."""
        t = self._geometry(spec, 7)
        if t[6] not in (0, 1, 2, 3):
            raise ValueError(f"{self.name}: tile {t}: FORM 0 (by cost), 1 (k's own order), 2 (pair order) or 3 "
                             f"(k's own order, extra steps)")
        if not self.fits(spec.K, t):
            raise ValueError(f"{self.name}: tile {t}: the stages and the pair order of K = {spec.K} (K / 2 bytes) "
                             f"need more than 227 KB of shared memory")
        return t

    def fits(self, K: int, t) -> bool:
        """The stages, a column tile's pair order (32 bytes per 64-k panel of whole k-steps) and the residual's
        buffer for at least MIN_SLOTS columns in 227 KB."""
        return self.smem_bytes(t) + self.perm_bytes(K, t) + MIN_SLOTS * self.slot_bytes(t) <= 227 * 1024

    @staticmethod
    def slot_bytes(t) -> int:
        """The residual's partial sums of one column: fp32 per row and group of BM threads."""
        nt, bm = 128 * t[0], t[1]
        return max(1, nt // bm) * bm * 4

    @staticmethod
    def perm_bytes(K: int, t) -> int:
        return -(-K // t[2]) * t[2] // 2

    def slots_per_chunk(self, K: int, t, c: dict) -> int:
        """Columns of the residual's fp32 partial sums [groups][slots][BM] (past the stages and the pair order):
        every residual column of the busiest tile, up to MAX_SLOTS, as far as the CTAs per SM stay as many."""
        per_sm = self.ctas_per_sm(t)
        room = (227 * 1024 if per_sm == 1 else 228 * 1024 // per_sm - 1024) - self.smem_bytes(t) - \
            self.perm_bytes(K, t)
        slots = int(c["res_slot"].max(initial=-1)) + 1
        return max(1, min(slots, MAX_SLOTS, room // self.slot_bytes(t)))

    @staticmethod
    def chunk_starts(c: dict, ntiles: int, rch: int) -> np.ndarray:
        """Each tile's residual entries in chunks of rch slots: chunk q of tile t is entries
        [a[t * NCH + q], a[t * NCH + q + 1]), NCH chunks per tile (the busiest tile's), empty ones at the end."""
        slot = c["res_words"][1::2]
        start = c["res_start"]
        nch = max(1, -(-(int(slot.max(initial=-1)) + 1) // rch))
        a = np.empty(ntiles * nch + 1, np.int64)
        for t in range(ntiles):
            s = slot[start[t]:start[t + 1]]
            a[t * nch:(t + 1) * nch] = start[t] + np.searchsorted(s, np.arange(nch) * rch)
        a[-1] = start[-1]
        return a

    def tile_candidates(self, pattern, K, N, dtype):
        """3 x 128 x 128 waited each step (the cover's best or within 3% of it at N = 768, bench/cuda/s7/run8-final),
        then 4 warpgroups with KS 128 (fewer 4-byte loads of X per output: best at (4096, 768, 3072) with BM 96 and
        at (4096, 3072, 768) with BM 128, bench/cuda/s8/run4-cover-tiles), then the 2:4 kernel's tiles, where the
        pair order fits beside the stages. Of the two 4-warpgroup tiles, BM 96 comes first for narrow weights
        (N = 768: 3 column tiles x 43 m-tiles at M = 4096 fill the 132 SMs, BM 128 leaves 36 idle); for wide ones
        (N >= 2048) 4 x 128 x 128 comes first of all (at (4096, 3072, 768): 37.2 against 41.6 us with K as given,
        30.0 against 31.5 with K reordered, bench/cuda/s13/run7-final), as the tuner times only the first two tiles
        of a family it was not given. Where K or N is at most 512 (MiniLM's 384 and 1536), smaller column tiles
        come first: 2 x 96 x 64 was the best or within 4% of it at (4096, 384, 384), (4096, 1536, 384) and
        (4096, 384, 1536) with K reordered and each one's fused epilogue (4.2 against 5.2 us for 3 x 128 x 64 with
        bias; 10.6 against 13.5 for 3 x 128 x 128 with bias and residual; bench/cuda/s17/run1-minilm-tiles), as
        the tuner times only the first CANDIDATES_PER_KERNEL (6)."""
        four = [(4, 96, 128, 3, 0, 0), (4, 128, 128, 3, 0, 0)]
        first = [(3, 128, 128, 3, 0, 0)] + four
        if N >= 2048:
            first = [(4, 128, 128, 3, 0, 0), (3, 128, 128, 3, 0, 0), (4, 96, 128, 3, 0, 0)]
        if min(K, N) <= 512:
            first = [(2, 96, 64, 4, 1, 0), (2, 128, 128, 3, 0, 0), (3, 64, 64, 4, 1, 0), (2, 128, 64, 4, 1, 0),
                     (3, 128, 64, 4, 1, 0), (3, 128, 128, 3, 0, 0)]
        return [t for t in dict.fromkeys(first + CANDIDATES) if self.fits(K, t)]

    def tables(self, spec, packed, t):
        """The cover in the tile's FORM; by default (FORM 0) k's own order if nothing is past two, else the cheapest
        (``form_cost``) of k's own order with the residual added, the pair order, and k's own order with extra
        steps."""
        if packed.nnz > MAX_BAKED_NNZ:
            raise ValueError(f"{self.name}: {packed.nnz} non-zeros is over the {MAX_BAKED_NNZ} baked-table limit")
        c = self._cover_tables(spec, packed, t, natural=t[6] != 2, extend=t[6] == 3)  # (t: geometry()'s, FORM last)
        if c["nres"] and not t[6]:
            M = 4096  # (both sides scale with M)
            base = CudaNmWgmma.cost(self, spec, packed, M)
            forms = [c, self._cover_tables(spec, packed, t, natural=False),
                     self._cover_tables(spec, packed, t, natural=True, extend=True)]
            c = min(forms, key=lambda f: self.form_cost(spec, t, f, M, base))
        return c

    def form_cost(self, spec, t, c, M, base) -> float:
        """The cover's time in the form of tables ``c``, from the 2:4 kernel's time ``base`` at the tile: times
        COVER_STEP_FACTOR for the pair order's 4-byte loads of X; plus the extra steps (COVER_EXT_STEP_S per 64 k
        of a step and wave of CTAs); plus the residual (residual_cost)."""
        ctas = -(-spec.N // (64 * t[0])) * -(-M // t[1])
        waves = -(-ctas // (H200_SMS * self.ctas_per_sm(t)))
        return (base if c["natural"] else COVER_STEP_FACTOR * base) + \
            c["esteps"] * t[2] // 64 * waves * COVER_EXT_STEP_S + \
            self.residual_cost(spec, t, c, M, base)

    def _cover_tables(self, spec, packed, t, natural: bool, extend: bool = False) -> dict:
        """cover_tables, remembered for the last few (weight, KS, column tile, form): cost() and render() of every
        candidate tile ask for them, and tiles that share NWG and KS share them."""
        key = (packed.tables_hash(), spec.K, spec.N, t[2], 64 * t[0], natural, extend)
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            if len(memo) >= 24:
                memo.pop(next(iter(memo)))
            memo[key] = cover_tables(spec.K, spec.N, packed.tables["col_ptr"], packed.tables["row_idx"], t[2],
                                     64 * t[0], natural=natural, extend=extend)
        return memo[key]

    @staticmethod
    def tail_k0(K: int, t) -> int:
        """The first k whose stage is still in shared memory after the main loop (its last STAGES k-steps)."""
        return max(0, -(-K // t[2]) - t[3]) * t[2]

    def residual_cost(self, spec, t, c, M, base) -> float:
        """A CTA's residual: its column tile's entries x BM rows x COVER_CTA_TAIL_ROW_S (the natural cover, k in
        the last STAGES steps: X from a stage) or COVER_CTA_ENTRY_ROW_S (from global memory), and its columns with
        entries (slots) x BM x COVER_RES_SLOT_ROW_S. The CTAs share the SMs (the sum over all of them), and the
        busiest tile's CTAs stretch their waves (its CTAs spread over the SMs: the max); COVER_RES_FIXED_S more."""
        if not c["nres"]:
            return 0.0
        ntiles = -(-spec.N // (64 * t[0]))
        k, start = c["res_words"][0::2], c["res_start"]
        tail = (k >= self.tail_k0(spec.K, t)) if c["natural"] else np.zeros(k.size, bool)
        tiles = np.repeat(np.arange(ntiles), np.diff(start))
        ncols = (c["res_slot"].reshape(ntiles, -1) >= 0).sum(axis=1)  # each tile's slots
        per_cta = t[1] * (np.bincount(tiles, tail, ntiles) * COVER_CTA_TAIL_ROW_S +
                          np.bincount(tiles, ~tail, ntiles) * COVER_CTA_ENTRY_ROW_S + ncols * COVER_RES_SLOT_ROW_S)
        rows = -(-M // t[1])  # CTAs per column tile
        slots = H200_SMS * self.ctas_per_sm(t)
        return COVER_RES_FIXED_S + max(float(per_cta.sum()) * rows / slots, -(-rows // slots) * float(per_cta.max()))

    def extra_ctx(self, spec, packed, t):
        c = self.tables(spec, packed, t)
        ntiles = -(-spec.N // (64 * t[0]))
        rch = self.slots_per_chunk(spec.K, t, c)
        starts = self.chunk_starts(c, ntiles, rch)
        return dict(COVER=True, XPERM=not c["natural"], TAIL_K0=self.tail_k0(spec.K, t), nres=c["nres"],
                    dst=fmt_array(c["dst"]),
                    xperm=fmt_array(c["xperm"]) if not c["natural"] else "",
                    RCH=rch, NCH=(starts.size - 1) // ntiles, res_cstart=fmt_array(starts),
                    res_slot=fmt_array(c["res_slot"]), res_words=fmt_array(c["res_words"]),
                    idx_hex=hex_lines(c["idx"], 2), KW=c["KW"], EXT=c["esteps"], ext_src=fmt_array(c["ext"]))

    def describe(self, spec, packed):
        """The form FORM 0 (or the tile) takes for this weight, and what it does with the entries past two."""
        t = self.geometry(spec)
        c = self.tables(spec, packed, t)
        if not c["natural"]:
            form = "pair order per 64-k panel"
        elif c["esteps"]:
            chunks = int((c["ext"] >= 0).sum(axis=1).max())
            return (f"k's own order; up to {chunks} 8-k chunk(s) of X per column tile loaded again in "
                    f"{c['esteps']} extra k-step(s) of {t[2]} for the entries past two")
        else:
            form = "k's own order"
        return form + (f"; {c['nres']} entries past two added after the main loop" if c["nres"] else "")

    def cost(self, spec, packed, M):
        """The 2:4 kernel's wave model in the form the tables take (``form_cost``: the pair order's factor, the
        extra steps, the residual's reads of X)."""
        t = self.geometry(spec)
        if packed.nnz > MAX_BAKED_NNZ:
            return float("inf")
        c = self.tables(spec, packed, t)
        base = super().cost(spec, packed, M)
        return self.form_cost(spec, t, c, M, base)
