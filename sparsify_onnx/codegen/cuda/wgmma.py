"""Hopper wgmma kernels for tile-wise and block-sparse weights: ``cuda_tile_wgmma``, ``cuda_bcsr_wgmma``.
On by default (``SPARSIFY_WGMMA=0`` turns them off). The wgmma code runs only on Hopper (sm_90a), so each node's
source also carries the portable mma.sync kernel of the same node (``cuda_tile`` / ``cuda_bcsr_tc``, same packed
weights): the launcher hands over to it on other GPUs, and where M exceeds the wgmma kernel's index limits, so an
engine that uses them still runs everywhere. Checked on the H200 (sessions 3 and 4): the GPU tests
(tests/cuda_cases.py, numpy reference) and compute-sanitizer memcheck pass; the descriptor convention ``DESC`` is
variant 0 of ``bench/cuda/wgmma_probe.cu``. Measured (bench/NOTES-cuda.md, session 4): tile-wise G=128 at 8192^3
runs 2.3x cuBLAS at 75% sparsity and 4.7x at 90% (mma.sync ``cuda_tile``: 1.15x, 2.6x).

Why: the mma.sync kernels (``cuda_tile``, ``cuda_bcsr_tc``) run their mainloops at ~200 TFLOP/s of live work on
the H200, cuBLAS's wgmma kernels at ~710; the tile-wise bar (1.9x at 75% sparsity) needs ~370.

One template (``cuda_wgmma.cu.j2``) serves both. A CTA computes BM rows x one *group* of G = 64 or 128 output
columns from the group's kept rows of W, gathered with cp.async into the 128-byte-swizzled shared layout that
``wgmma.mma_async m64nGk16`` reads through matrix descriptors (B N-major). Tile-wise kept rows are single k, so X
is first transposed into scratch and A gathered M-major from X^T; block kept rows come in runs of H >= 8
consecutive k, so at 64 kept rows per stage A is read K-major straight from X (no transpose, no scratch). A
tile-wise tile is a group (its kept rows). For blocks h x w, a group is G / w block columns and its kept rows are
the union of their live block rows; a block absent from one member column is read as zeros. Adjacent block
columns would make 32x32 blocks at 90% run ~19% of the rows on n64 tiles (the mma.sync kernel runs 10% on n32
tiles at a fraction of the rate), so 32-wide block columns are paired by their shared blocks instead
(``group_block_columns``; 1.51x -> 1.84x cuBLAS at (4096, 3072, 768), session 10; 16-wide ones in fours, session
18) and each member's columns are stored where they belong. ``bench/cuda/wgmma_probe.cu`` is the tile kernel
standalone: it checks which descriptor stride convention is right; ``DESC`` must match it.

The TMA form (tile field 7, TM; template ``cuda_bcsr_tma.cu.j2``; blocks of 16, 32 or 64 columns and 16 rows or a
multiple of 32) takes the loads off the compute threads: per k-step of 32 kept rows, one thread issues a tensor-map
box of X (32 k x BM rows, 64-byte swizzle, rows past M zero-filled; 16-row blocks: two boxes of 16 k, 32-byte
swizzle, a step taking two block rows of the group's union, ``pair_steps``) and one bulk copy of the step's B
image, the step's 32 x
64 halves of the group's members (zeros for an absent block) stored pre-swizzled, so the plain form's table lookups
and cp.async address math (~250 instructions of prologue per warp and ~134 per k-step, session 10) shrink to an
mbarrier wait and two wgmma per k-step. The images are a weight of its own, built on the first call per (GPU,
values tensor) and held by the op layer's references (``_cuda_retain`` / ``_cuda_release``), as the cover's. TM 1:
a producer warp issues; TM 2: thread 0 of the consumers does (no extra warp, so 4 CTAs of BM 128 fit an SM); TM 3:
TM 1 with persistent CTAs, each walking items (group, m-tile) blockIdx.x + i gridDim.x, the producer running into
the next item while the consumers store the last (13.1 against 14.4 us at (4096, 3072, 768), run5). (A TM 4 that
kept a CTA's m-tile of X for all of K in shared memory, halving the L2 traffic at K = 768 with one CTA per SM, was
slower: 15.9 against 13.2 us, run6; it is in commit fffe8d7.) On the
H200 (session 11, bench/cuda/s11/run2-tma2): 14.4 against 16.9 us at (4096, 3072, 768), 5.9 against 7.0 at
(4096, 768, 768), 11.0 against 12.7 at (4096, 768, 3072), 482 against 581 us at 8192^3 (block 32x32 at 90%; 2.1x,
1.6x, 2.3x and 3.2x cuBLAS), so its tiles come first.

Tile: (BM, KS, STAGES, INFLIGHT[, RS[, LH[, TM]]]): rows per CTA (64, 128 or 256: one warpgroup per m64 sub-tile, every
thread loads and computes), kept rows per pipeline stage, stages, 1 to keep one wgmma group in flight across the
stage boundary, RS > 0 to raster the CTAs in supertiles of RS m-tiles (consecutive CTAs: the m-tiles of one
group) instead of group-fastest, LH the L2 eviction hints (bits: 1 keeps W's values with evict_last, 2 stores
Y with evict-first, 4 loads X^T with evict_first; in the TMA form 8 stores Y by TMA, from a staging tile per
warpgroup and 32 columns, the stores running on into the persistent CTA's next item: 2-8% faster at the BERT
shapes, no residual), and TM the TMA form (above; KS 32, no RS, LH 0, 2, 8 or 10). The
mainloop sets each thread's addresses up once and only adds stage offsets (233 -> 128 SASS instructions per k-step at 8192^3 tile-wise, 1.25x faster on the H200). The
epilogue stores 16 bytes per lane (4-byte stores were 1.05x slower at 8192^3 and 1.4-1.7x at BERT shapes), each
8 rows x 32 columns put in row order through shared memory by one ``stmatrix`` (the quad shuffles it replaced,
as in the gather kernels, took ~4x the instructions: 3-4% at the block BERT shapes). A warp-specialized form (a loading warpgroup, mbarrier pipeline) and a fused
transpose were measured and lost at every benchmark shape after that change (bench/NOTES-cuda.md, session 4);
they are in git history (commit c70aca7), as is a 2-CTA cluster form with TMA multicast (3d5d7c0) and an
X-stationary form for blocks (1fd7dec: a CTA keeps its rows of X for all of K in shared memory and walks a run
of groups; 24.5 against 20.2 us at 4096x3072x768, block 32x32 at 90%: both forms are bound by instruction issue,
not by the re-reads of X it saved; bench/NOTES-cuda.md, session 10) and runs of groups per CTA (tile field RUN,
0c9603b: one wave of CTAs, each walking a run of groups with one pipeline: 22.4 against 16.8 us there, 1018
against 578 us at 8192^3; the hardware's scheduling of many short CTAs balances better); two m64 sub-tiles
per warpgroup (tile field MW, 2209b53) came within 2% of one and lost at tile-wise 8192^3. The
kernel is launched as a programmatic dependent of the transpose. The build compiles sm_90 as sm_90a.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..registry import KernelFamily, get_family, register_family
from .common import BW, LAUNCH, base_ctx, fmt_array, index_ctype, render_template, source
from .gather import _tables

# (LBO_A, SBO_A, LBO_B, SBO_B) for a panel of `panel` bytes: LBO strides the 64-wide MN panels, SBO the groups
# of 8 K rows (CUTLASS's canonical MN-major 128-byte-swizzle layout). Confirmed on the H200 by
# bench/cuda/wgmma_probe.cu (variant 0 correct, variants 1-3 wrong).
DESC = lambda panel: (panel, 1024, panel, 1024)  # noqa: E731

# cost model constants (H200, session 4; fitted by least squares in log time to the plain-form rows of
# bench/cuda/s4/run6-default-on/bench.json): the mainloop rate per SM (2 CTAs of 128x128 each at half of it) and
# the register transpose of X (77.6 us for 8192^2 under ncu). With the leaner mainloop the pipeline fill and the
# epilogue overlap the other CTA's k-steps, so the model no longer charges them.
WGMMA_SM_RATE = 4.2e12
# block groups (n64 tiles over the union of their columns' live rows, absent blocks zero-filled): SM time per CTA
# and per 32 kept rows of 128 rows of X, the plain form [0] and the TMA form [1] (tile field TM), fitted by least
# squares (after LAUNCH) to the H200 (session 11, bench/cuda/s11/run2-tma2: block 32x32 at 90%, BM 128, both forms
# in one call). Plain 16.9 / 7.0 / 12.7 / 581 us at (4096, 3072, 768), (4096, 768, 768), (4096, 768, 3072), 8192^3:
# the model gives 16.6 / 7.2 / 14.0 / 581. TMA 14.9 / 5.9 / 11.0 / 522: the model gives 14.5 / 6.5 / 12.5 / 522,
# and 510 for BM 256's 482. (A fixed cost per CTA shows at every shape: the FLOP-rate model it replaced was 0.65x
# the plain form's time at (4096, 3072, 768).)
BLOCK_CTA_S = (0.52e-6, 0.40e-6)
BLOCK_ROWS32_S = (0.19e-6, 0.174e-6)
# blocks under 32 rows cost more per kept row (a table entry, and its loads' addresses, per H rows): 16x16 blocks
# at 90%, fours grouped, plain form 128x64x3x0 (session 18, bench/cuda/s18/run3-group: 9.2 / 28.8 / 27.5 / 1248
# us at the four benchmark shapes) take 1.28-1.43x of BLOCK_ROWS32_S per 32 kept rows, the TMA form (two boxes of
# X per step, B images a third zeros; run5-tma16: 8.1 / 28.1 / 27.5 / 1354-1508 us) 1.2-1.7x: 1 + this * (32 / H -
# 1), plain form [0], TMA form [1]
BLOCK_SHORT_ENTRY = (0.3, 0.5)
# the TMA form's tiles, in the order tuning tries them (its first six; s11/run1-tma, run2-tma2, run5-tma3,
# s18/run6-ys): the best at (4096, 768, 768) and (4096, 768, 3072) (the default: any epilogue); at (4096, 3072, 768)
# persistent (TM 3: 13.1 against 14.4 us; slower at 8192^3, 559 against 486 us), with Y stored by TMA (LH 8: 12.8
# against 13.1; 64x64 blocks 11.0 against 12.0; no residual) and without; at 8192^3 (LH 8 was slower there, 592
# against 484 us: one CTA of BM 256 per SM with the staging tiles, not two); for 64x64 blocks; the first with Y by
# TMA (13.8 against 14.5 at (4096, 3072, 768), 5.5 against 5.7 at (4096, 768, 768)); the best without a producer warp
TMA_CANDIDATES = [(128, 32, 4, 1, 0, 2, 1), (128, 32, 4, 0, 0, 10, 3), (128, 32, 4, 0, 0, 2, 3),
                  (256, 32, 4, 1, 0, 2, 2), (64, 32, 4, 0, 0, 0, 1), (128, 32, 4, 1, 0, 10, 1),
                  (128, 32, 3, 1, 0, 2, 2)]
# constant memory for the TMA form's uniformly read tables (gptr, ukb, bcol), up to this many bytes per kernel: a
# module holds 64 KB, and the tuner and the benchmark build several kernels into one (an engine builds one per
# node). BERT-base's tables take under 1 KB; 8192^3 at 90% takes 12 KB and stays in global memory. On the H200
# (session 11, run4): 15.0 -> 14.3 us at (4096, 3072, 768), 482.6 -> 475.4 us at 8192^3 with its 12 KB, the
# other BERT shapes within 1%.
CONST_TABLE_BYTES = 4 * 1024
TRANSPOSE_BW = 3.2e12
H200_SMS = 132

# the tiles that won or came within 5% somewhere in session 4's H200 sweep (bench/cuda/s4/run6-default-on):
# (128, 64, 3, 0) at 8192^3 75% and most BERT shapes, (128, 64, 3, 1) at 90%, (128, 32, 4, 0) at small K,
# the raster and BM = 256 forms close behind at 8192^3; all L2 hints (LH 7) 1.5-3% faster at BERT shapes (run7);
# BM 64 (3 CTAs per SM) 7% faster at (4096, 768, 768) and slower elsewhere (run10)
# (in the order tuning tries them: the first two when the family competes as another family's variant)
CANDIDATES = [(128, 64, 3, 0), (128, 64, 3, 1), (64, 64, 3, 0), (128, 64, 3, 0, 0, 7), (128, 32, 4, 0),
              (128, 64, 3, 0, 8), (256, 64, 4, 0)]


# the portable (mma.sync) family each wgmma family carries for GPUs other than Hopper
FALLBACK = {"cuda_tile_wgmma": "cuda_tile", "cuda_bcsr_wgmma": "cuda_bcsr_tc"}


def embedded_fallback(spec, fb, packed) -> tuple[str, str]:
    """(name, source) of the portable kernel ``fb`` (a spec of the fallback family for the same node) as a Hopper
    kernel's source carries it: under its own name, ``<node>_fallback`` (namespace, launchers), so an engine
    that also runs the same node's portable kernel on its own compiles and links both."""
    name = f"{spec.procedural_name()}_fallback"
    return name, get_family(fb.family).render(fb, packed)[0].text.replace(fb.procedural_name(), name)


def enabled() -> bool:
    """On unless SPARSIFY_WGMMA=0 (then conversion never picks the wgmma families)."""
    return os.environ.get("SPARSIFY_WGMMA", "1") != "0"


def hopper_supports(fam: KernelFamily, pattern, K, N, dtype, k_rows: bool) -> str | None:
    """The checks every Hopper family shares after its own: turned on, 16-byte rows (N, and K when ``k_rows``: X is
    read in 16-byte pieces along K), and a portable family that takes the node (an engine must run off Hopper too)."""
    if not enabled():
        return f"{fam.name} is turned off (SPARSIFY_WGMMA=0)"
    if k_rows and (K % 8 or N % 8):
        return f"{fam.name} needs K and N multiples of 8, not {K} and {N}"
    if N % 8:
        return f"{fam.name} needs N a multiple of 8, not {N}"
    fb = get_family(fam.portable).supports(pattern, K, N, dtype)
    if fb:
        return f"{fam.name}: no portable fallback for this node ({fb})"
    return None


def group_block_columns(col_ptr, row_idx, H: int, KS: int, C: int = 2) -> np.ndarray | None:
    """An order of the block columns in which each C neighbours (a group: C c .. C c + C - 1) share live block rows,
    so that the groups take fewer k-steps of KS rows over the union of their blocks; None unless it saves k-steps
    without making the longest group longer (the last wave of CTAs waits for it). Heaviest column first, then, C - 1
    times, the free column of fewest k-steps over the union so far, then of most blocks shared with it: a heavy
    column gets light or overlapping partners. On the benchmark's random weights at 90% (bench/NOTES.md): 32x32
    pairs (session 10), k-steps 117 -> 83 and the longest group 5 -> 4 at (K, N) = (768, 3072), 37 -> 29 (4 -> 4)
    at (768, 768), 108 -> 103 (13 -> 9) at (3072, 768); 16x16 fours (session 18) 210 -> 167 (6 -> 5) at (768,
    3072), 50 -> 44 at (768, 768), 212 -> 196 at (3072, 768), 5709 -> 5181 at 8192^2. (Taking the pairs of fewest
    k-steps first saved more k-steps but made the longest group longer: slower on the H200 at N = 768.) A last
    group short of columns gets -1 (none) for the missing members."""
    nbc = len(col_ptr) - 1
    if nbc <= C:
        return None
    nkb = int(row_idx.max()) + 1 if row_idx.size else 1
    live = np.zeros((nkb, nbc), bool)
    for bc in range(nbc):
        live[row_idx[col_ptr[bc]:col_ptr[bc + 1]], bc] = True
    cnt = live.sum(axis=0)

    def steps(rows):
        return np.maximum(1, -(-np.asarray(rows) * H // KS))
    used = np.zeros(nbc, bool)
    groups: list[list[int]] = []
    for c in np.argsort(-cnt, kind="stable"):
        if used[c]:
            continue
        used[c] = True
        members, union = [int(c)], live[:, c].copy()
        for _ in range(C - 1):
            free = np.flatnonzero(~used)
            if free.size == 0:
                break
            shared = (live[:, free] & union[:, None]).sum(axis=0)
            p = int(free[np.lexsort((-shared, steps(int(union.sum()) + cnt[free] - shared)))[0]])
            used[p] = True
            members.append(p)
            union |= live[:, p]
        groups.append(members + [-1] * (C - len(members)))

    def cost(gs):
        s = [int(steps(int(live[:, [m for m in g if m >= 0]].any(axis=1).sum()))) for g in gs]
        return sum(s), max(s)
    natural = cost([[c + i if c + i < nbc else -1 for i in range(C)] for c in range(0, nbc, C)])
    grouped = cost(groups)
    if grouped[0] >= natural[0] or grouped[1] > natural[1]:
        return None
    return np.array(groups, dtype=np.int64).reshape(-1)


# block widths whose block columns group_tables groups by their shared blocks (G = 64: pairs of 32, fours of 16)
GROUPED_WIDTHS = (16, 32)


def group_tables(spec, packed, G: int, KS: int = 0):
    """(H, W, gptr, ukb, ubl or None, bcol or None): per group of G columns, its entries (kept row blocks) and,
    for blocks, which block of each member column holds the values (-1: none). With ``KS`` (the kernel's k-step),
    16- and 32-wide block columns are grouped by ``group_block_columns``: bcol[g * C + c] is the block column of W
    that member c of group g is (-1: none); None keeps the natural order (member c of group g is block column
    g * C + c)."""
    if spec.pattern.kind == "tile":
        tptr, rows = _tables(spec, packed)
        return 1, G, np.asarray(tptr), np.asarray(rows), None, None
    h, w = spec.pattern.block
    col_ptr, row_idx = (np.asarray(a) for a in _tables(spec, packed))
    C = G // w
    nbc = len(col_ptr) - 1
    bcol = group_block_columns(col_ptr, row_idx, h, KS, C) if KS and G == 64 and w in GROUPED_WIDTHS else None
    gptr, ukb, ubl = [0], [], []
    for g in range(-(-nbc // C)):
        members = []
        for c in range(C):
            bc = g * C + c if bcol is None else int(bcol[g * C + c])
            members.append({} if bc >= nbc or bc < 0 else
                           {int(row_idx[u]): u for u in range(int(col_ptr[bc]), int(col_ptr[bc + 1]))})
        union = sorted(set().union(*[m.keys() for m in members]))
        for kb in union:
            ukb.append(kb)
            ubl += [m.get(kb, -1) for m in members]
        gptr.append(len(ukb))
    return h, w, np.array(gptr), np.array(ukb, dtype=np.int64), np.array(ubl, dtype=np.int64), bcol


def pair_steps(gptr, ukb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TMA form's k-steps for 16-row blocks, two entries (block rows of a group's union) each: (sptr [groups +
    1]: group g's steps are sptr[g] .. sptr[g + 1] - 1; skb [2 steps]: the block rows step i loads, the first again
    where a group's odd count leaves no second; sent [2 steps]: their entries, -1 for none)."""
    sptr, skb, sent = [0], [], []
    for g in range(len(gptr) - 1):
        ents = list(range(int(gptr[g]), int(gptr[g + 1])))
        for j in range(0, len(ents), 2):
            a = ents[j]
            b = ents[j + 1] if j + 1 < len(ents) else -1
            skb += [int(ukb[a]), int(ukb[b if b >= 0 else a])]
            sent += [a, b]
        sptr.append(len(skb) // 2)
    return np.array(sptr), np.array(skb, dtype=np.int64), np.array(sent, dtype=np.int64)


class _Wgmma(KernelFamily):
    device = "cuda"
    dtypes = ("fp16",)
    needs_capability = (9, 0)

    def group_width(self, pattern) -> int:
        raise NotImplementedError

    def supports(self, pattern, K, N, dtype):
        return super().supports(pattern, K, N, dtype) or hopper_supports(self, pattern, K, N, dtype, k_rows=False)

    def tile_candidates(self, pattern, K, N, dtype):
        return list(CANDIDATES)

    def _geometry(self, spec):
        """(BM, KS, STAGES, INFLIGHT, RS, LH, TM); the trailing fields default to 0."""
        t = tuple(spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0])
        if len(t) < 4 or len(t) > 7:
            raise ValueError(f"{self.name}: tile {t}: (BM, KS, STAGES, INFLIGHT[, RS[, LH[, TM]]]) expected")
        t = t + (0,) * (7 - len(t))
        BM, KS, G = t[0], t[1], self.group_width(spec.pattern)
        if t[6]:
            why = self.tma_unsupported(spec.pattern, spec.K, t)
            if not why and t[5] & 8 and (spec.epilogue.residual or spec.N % 8):
                why = "the TMA form's store of Y (LH 8) takes no residual and N a multiple of 8"
            if why:
                raise ValueError(f"{self.name}: tile {t}: {why}")
            return t
        pt = 2 * BM  # loading threads
        if BM not in (64, 128, 256) or KS % 16 or (KS * BM // 8) % pt or (KS * G // 8) % pt:
            raise ValueError(f"{self.name}: tile {t}: BM must be 64, 128 or 256 and each stage's 16-byte chunks "
                             f"({KS} rows x {BM} + {G} columns) a multiple of the {pt} loading threads")
        return t

    def tma_unsupported(self, pattern, K, t) -> str | None:
        """Why the TMA form (tile field TM, ``cuda_bcsr_tma.cu.j2``) cannot take this tile, or None. It runs blocks
        of 32 or 64 columns and a multiple of 32 rows, k-steps of 32 rows, without raster or load hints, and
        reads X through a tensor map (rows of 16-byte multiples)."""
        if pattern.kind != "block":
            return "the TMA form (TM) is for blocks"
        if K % 8:
            return f"the TMA form (TM) needs K a multiple of 8, not {K}"
        h, w = pattern.block
        BM, KS, ST, _, RS, LH, _ = t
        if (h % 32 and h != 16) or w not in (16, 32, 64):
            return (f"the TMA form (TM) needs blocks of 16, 32 or 64 columns and 16 rows or a multiple of 32, "
                    f"not {h}x{w}")
        if BM not in (64, 128, 256) or KS != 32 or ST < 2 or RS or LH & ~10 or t[6] not in (1, 2, 3):
            return ("the TMA form (TM 1: a producer warp, 2: thread 0 issues, 3: 1 persistent) takes BM 64, 128 or "
                    "256, KS 32, 2 or more stages, no raster and LH 0, 2, 8 or 10")
        if LH & 8 and w < 32:
            return f"the TMA form's store of Y (LH 8) takes blocks of 32 or 64 columns, not {w}"
        return None

    def render(self, spec, packed):
        BM, KS, ST, INF, RS, LH, TM = self._geometry(spec)
        G = self.group_width(spec.pattern)
        H, W, gptr, ukb, ubl, bcol = group_tables(spec, packed, G, KS)
        ctx, fb_text = self._context(spec, packed, (H, W, gptr, ukb, ubl, bcol))
        ctx.update(BM=BM, STAGES=ST, INFLIGHT=INF, LH=LH)
        if TM:
            # the tables a CTA reads uniformly (gptr, ukb or the steps' sptr and skb, bcol) go to constant memory
            # where they fit (the constant cache serves them after the first CTA on an SM; global memory costs an L2
            # round trip each)
            kbytes = 2 if ctx["kb_type"] == "unsigned short" else 4
            nbytes = 4 * len(gptr) + 4 * (bcol.size if bcol is not None else 0)
            ctx["PR"] = H == 16  # 16-row blocks: two per k-step
            if ctx["PR"]:
                sptr, skb, sent = pair_steps(gptr, ukb)
                ctx.update(nsteps=len(skb) // 2, sptr=fmt_array(sptr), skb=fmt_array(skb), sent=fmt_array(sent))
                nbytes += 4 * len(sptr) + kbytes * len(skb)
            else:
                nbytes += kbytes * ukb.size
            ctx.update(TABLES="__constant__" if nbytes <= CONST_TABLE_BYTES else "__device__ const",
                       MINB=self.tma_ctas_per_sm(BM, ST, TM, LH), TM=TM, YS=bool(LH & 8))
            return source(spec, render_template("cuda_bcsr_tma.cu.j2", **ctx) + fb_text)
        la, sa, lb, sb = DESC(KS * 128)
        XK = self.reads_x_directly(spec, H, KS)
        if XK:
            la = 16  # K-major swizzled A: the leading byte offset is not used
        ctx.update(MINB=self.ctas_per_sm(BM, KS, ST, G), G=G, KS=KS, RS=RS, XK=XK, IDENT=ubl is None,
                   LBO_A=la, SBO_A=sa, LBO_B=lb, SBO_B=sb)
        return source(spec, render_template("cuda_wgmma.cu.j2", **ctx) + fb_text)

    def _context(self, spec, packed, tables) -> tuple[dict, str]:
        """The template context both forms share (the node, its embedded portable kernel's name, the group tables)
        and that kernel's source, to append ("" where there is none)."""
        H, W, gptr, ukb, ubl, bcol = tables
        fb = self.fallback_spec(spec)
        fb_name, fb_text = embedded_fallback(spec, fb, packed) if fb else ("", "")
        ctx = base_ctx(spec, packed)
        ctx.update(FALLBACK=fb_name, FALLBACK_FAMILY=fb.family if fb else "",
                   FALLBACK_SCRATCH=bool(fb) and f"{fb_name}_cuda_scratch" in fb_text)
        ctx.update(H=H, W=W, ngroups=len(gptr) - 1, gptr=fmt_array(gptr), ukb=fmt_array(ukb), nent=int(ukb.size),
                   kb_type=index_ctype(int(ukb.max()) if ukb.size else 0),
                   ubl=fmt_array(ubl) if ubl is not None else "", BCOL=bcol is not None,
                   bcol=fmt_array(bcol) if bcol is not None else "")
        return ctx, "\n" + fb_text if fb else ""

    @staticmethod
    def tma_ctas_per_sm(BM: int, ST: int, TM: int, LH: int = 0) -> int:
        """CTAs per SM of the TMA form: as many as 228 KB of shared memory hold (its stages, the epilogue's patches,
        with LH 8 the staging tiles of Y's store, the mbarriers, 1 KB of alignment slack, 1 KB the system keeps), at
        most what leaves 64 registers a thread
        (ptxas needs 58, allocated in 8s, for the n64 accumulators and descriptors; BM / 64 consumer warpgroups
        and, but for TM 2, a producer warp)."""
        nt = BM // 64 * 128 + (0 if TM == 2 else 32)
        smem = ST * (BM * 64 + 4096) + nt // 32 * 640 + 16 * ST + 2048 + (BM // 64 * 8192 if LH & 8 else 0)
        return max(1, min(228 * 1024 // smem, 65536 // (nt * 64)))

    @staticmethod
    def ctas_per_sm(BM: int, KS: int, ST: int, G: int) -> int:
        """CTAs per SM the kernel is built for (__launch_bounds__): as many as 228 KB of shared memory hold (each
        CTA: its stages, 1 KB of alignment slack, 1 KB the system keeps), at most what leaves ~110 registers a
        thread (4, 2, 1 for 1, 2, 4 warpgroups)."""
        smem = ST * KS * (BM + G) * 2 + 2048
        return max(1, min(228 * 1024 // smem, {64: 4, 128: 2, 256: 1}[BM]))

    @staticmethod
    def reads_x_directly(spec, H: int, KS: int) -> bool:
        """Block rows come in runs of H >= 8 consecutive k, so with 64 kept rows per stage the kernel loads A
        K-major straight from X (16-byte pieces of 8 consecutive k) and skips the transpose; tile-wise rows are
        single, so that family always transposes."""
        return spec.pattern.kind == "block" and H % 8 == 0 and KS == 64 and spec.K % 8 == 0

    def fallback_spec(self, spec):
        """The node's portable kernel (the mma.sync family at its default tile), or None where that family
        does not take the pattern: the wgmma launcher hands over to it off Hopper."""
        fam = get_family(FALLBACK[self.name])
        if fam.supports(spec.pattern, spec.K, spec.N, spec.dtype):
            return None
        return dataclasses.replace(spec, family=fam.name, tile=())

    def cost(self, spec, packed, M):
        """A wave model fitted to the H200 (sessions 3 and 4, bench/NOTES-cuda.md): every CTA (one group x BM rows)
        runs its k-steps at a per-SM rate, CTAs fill the SMs' slots, and the transpose of X runs before. Within
        0.70-1.27x of the measured plain-form times at 8192^3 and the BERT shapes (the FLOP roofline it replaced
        was 1.5-4x optimistic)."""
        BM, KS, ST, TM = (self._geometry(spec)[i] for i in (0, 1, 2, 6))
        G = self.group_width(spec.pattern)
        H, _, gptr, _, _, _ = group_tables(spec, packed, G, KS)
        steps = -(-(np.diff(np.asarray(gptr)) * H) // KS)
        mt = -(-M // BM)
        if spec.pattern.kind == "block":  # SM time per CTA and per 32 kept rows
            f = 1 if TM else 0
            rows32 = float(steps.sum()) * KS / 32 * (1 + BLOCK_SHORT_ENTRY[f] * max(0, 32 / H - 1))
            t_gemm = mt * (steps.size * BLOCK_CTA_S[f] + rows32 * BM / 128 * BLOCK_ROWS32_S[f]) / H200_SMS
        else:
            per_sm = self.ctas_per_sm(BM, KS, ST, G)
            cta = steps * 2.0 * BM * G * KS / (WGMMA_SM_RATE / per_sm)  # per group
            t_gemm = max(mt * float(cta.sum()) / (H200_SMS * per_sm), float(cta.max()) if cta.size else 0.0)
        t_transpose = 0.0 if TM or self.reads_x_directly(spec, H, KS) else 2.0 * M * spec.K * 2 / TRANSPOSE_BW
        byts = 2 * (M * spec.K + M * spec.N * (2 if spec.epilogue.residual else 1)) + packed.values.nbytes
        return LAUNCH + t_transpose + max(t_gemm, byts / BW)  # (one launch: the GEMM's overlaps the transpose, PDL)


@register_family
class CudaTileWgmma(_Wgmma):
    """Tile-wise G = 64 or 128, fp16, Hopper wgmma (portable fallback: cuda_tile)."""
    name = "cuda_tile_wgmma"
    patterns = ("tile",)
    portable = FALLBACK["cuda_tile_wgmma"]

    def group_width(self, pattern):
        return pattern.granularity

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why is None and pattern.granularity not in (64, 128):
            return f"{self.name} needs tiles of 64 or 128 columns, not {pattern.granularity}"
        return why


@register_family
class CudaBcsrWgmma(_Wgmma):
    """Block-sparse fp16 on Hopper wgmma, block columns grouped to 64 (w <= 64) or 128 (w = 128) columns
    (portable fallback: cuda_bcsr_tc where it takes the blocks)."""
    name = "cuda_bcsr_wgmma"
    patterns = ("block",)
    portable = FALLBACK["cuda_bcsr_wgmma"]

    def group_width(self, pattern):
        return 128 if pattern.block[1] == 128 else 64

    def tile_candidates(self, pattern, K, N, dtype):
        """The TMA form's tiles first where it takes the blocks (faster at every shape measured with blocks of 32 rows
        or more), then the plain form's; for 16-row blocks the plain form's first tile leads (the TMA form was 3-11%
        faster at the BERT shapes, 21% slower at 8192^3: session 18, run5-tma16)."""
        tma = [t for t in TMA_CANDIDATES if self.tma_unsupported(pattern, K, t) is None]
        if pattern.block[0] < 32:
            return CANDIDATES[:1] + tma + CANDIDATES[1:]
        return tma + list(CANDIDATES)

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why is None:
            h, w = pattern.block
            if w not in (8, 16, 32, 64, 128):
                return f"{self.name} needs block widths 8..128 (powers of two), not {w}"
        return why
