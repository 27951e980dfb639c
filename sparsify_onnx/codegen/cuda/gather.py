"""Block-sparse (BCSC) and tile-wise (SC'20) kernels: one "gathered-K GEMM" template each for
tensor cores (fp16, mma.sync) and CUDA cores (exact fp32 FMA).

Both patterns cut W into column tiles (a block column of w columns, or a tile of G columns)
that each keep a list of *units*: a live h x w block (block pattern) or a live K row
(tile pattern). A CTA computes BM rows x one column tile, walking only that tile's units;
the unit tables are baked into the source (``tptr``, ``unit_row``), the values stream
from the op's ``values`` input in the packed order of codegen/packing.py.

Tile configurations (``KernelSpec.tile``):

* ``cuda_bcsr_tc``:  (BM, WARPS_M, WARPS_N, STAGES, SPC); BN = w, k-step = h.
* ``cuda_tile``:     (BM, KS, WARPS_M, WARPS_N, STAGES, SPC); BN = G, KS kept rows per k-step.
  XC > 0 (block only): X-stationary, the CTA's BM x K strip of X stays in shared memory while it walks
  one of XC chunks of the column tiles. SPC: steps per chunk. The column tiles are cut, in order, into chunks of about SPC k-steps
  (0: one tile per chunk); one CTA runs one chunk x BM rows with one cp.async pipeline
  across its tiles, so short tiles do not leave the pipeline empty.
  Rows of X are gathered from X^T, written by a transpose pre-pass into scratch
  (K x roundup(M, 8) fp16: ``_cuda_scratch``).
* ``cuda_bcsr_fp32`` / ``cuda_tile_fp32``: (BM, KS) for tile, (BM,) for block; fp32 or fp16 I/O,
  fp32 FMA, any K and N.
"""
from __future__ import annotations

import numpy as np

from ...pattern import Pattern
from ..registry import GeneratedSource, KernelFamily, KernelSpec, PackedWeight, register_family
from .common import base_ctx, fmt_array, index_ctype, render_template, roofline, source


def _tables(spec: KernelSpec, packed: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    t = packed.tables
    if spec.pattern.kind == "block":
        return np.asarray(t["col_ptr"]), np.asarray(t["row_idx"])
    return np.asarray(t["tile_ptr"]), np.asarray(t["rows"])


def _bn_ks(pattern: Pattern) -> tuple[int, int]:
    if pattern.kind == "block":
        h, w = pattern.block
        return w, h
    return pattern.granularity, 0


def tc_candidates(BN: int, KS: int) -> list[tuple[int, int, int, int]]:
    """(BM, WARPS_M, WARPS_N, STAGES) that fit: warp tiles 16..64 x 16..64, 4 or 8 warps, <= 160 KB smem."""
    out = []
    for BM in (64, 128, 256):
        for WN in (1, 2, 4, 8):
            if BN % WN or (BN // WN) % 16 or BN // WN > 64:
                continue
            for WM in (1, 2, 4, 8):
                if BM % WM or (BM // WM) % 16 or BM // WM > 64:
                    continue
                if WM * WN not in (4, 8):
                    continue
                for ST in (3, 4):
                    smem = ST * (BM * (KS + 8) + KS * (BN + 8)) * 2
                    if smem > 160 * 1024:
                        continue
                    out.append((BM, WM, WN, ST))

    def score(c):
        BM, WM, WN, ST = c
        wtm, wtn = BM // WM, BN // WN
        return (-min(wtm * wtn, 64 * 64), -(wtm >= wtn), WM * WN != 4, ST != 3, BM != 128)  # H200: 3 stages won
    return sorted(out, key=score)


def _chunks(tptr: np.ndarray, per_step: int, spc: int):
    """Steps (tile, first unit) in tile order, cut into chunks of about ``spc`` steps (0: one tile each;
    negative: -spc chunks of about equal steps)."""
    if spc < 0:
        total = sum(max(1, -(-int(tptr[t + 1] - tptr[t]) // per_step)) for t in range(len(tptr) - 1))
        spc = max(1, -(-total // -spc))
    step_tile, step_u, chunk_ptr = [], [], [0]
    cur = 0
    for t in range(len(tptr) - 1):
        a, b = int(tptr[t]), int(tptr[t + 1])
        us = list(range(a, b, per_step)) or [-1]
        step_tile += [t] * len(us)
        step_u += us
        cur += len(us)
        if spc <= 0 or cur >= spc:
            chunk_ptr.append(len(step_tile))
            cur = 0
    if chunk_ptr[-1] != len(step_tile):
        chunk_ptr.append(len(step_tile))
    return np.array(chunk_ptr), np.array(step_tile), np.array(step_u)


SPC_CHOICES = (0, 32, 12)


def xs_candidates(BN: int, KS: int, K: int) -> list[tuple[int, int, int, int, int, int]]:
    """X-stationary configurations (BM, NWARPS, 1, WST, 0, XC) of cuda_bcsr_xw.cu.j2: the CTA keeps its
    BM x K strip of X in shared memory; each warp walks its own column tiles, streaming W blocks through a
    private WST-stage ring; the column tiles are cut into XC chunks (one CTA column each)."""
    Kp = -(-K // KS) * KS
    out = []
    for BM in (64, 32, 128):
        for NW in (8, 4):
            WST = next((w for w in (4, 3, 2) if BM * (Kp + 8) * 2 + NW * w * KS * (BN + 8) * 2 <= 227 * 1024), 0)
            if not WST:
                continue
            if (BM // 16) * (BN // 8) * 4 > 128:
                continue
            for C in (2, 1, 4):
                out.append((BM, NW, 1, WST, 0, C))
    return out


def _xw_tables(tptr: np.ndarray, nwarps: int, nchunks: int):
    """Column tiles cut into ``nchunks`` contiguous chunks of about equal blocks, and within each chunk
    spread over the warps by longest-processing-time first. Returns (wptr, wtile)."""
    T = len(tptr) - 1
    cost = [max(1, int(tptr[t + 1] - tptr[t])) + 1 for t in range(T)]  # +1: the epilogue
    total = sum(cost)
    bounds, acc, c = [0], 0, 1
    for t in range(T):
        acc += cost[t]
        if c < nchunks and acc >= total * c / nchunks:
            bounds.append(t + 1)
            c += 1
    while len(bounds) < nchunks + 1:
        bounds.append(T)
    bounds[-1] = T
    wptr, wtile = [0], []
    for ci in range(nchunks):
        tiles = list(range(bounds[ci], bounds[ci + 1]))
        loads = [0] * nwarps
        lists: list[list[int]] = [[] for _ in range(nwarps)]
        for t in sorted(tiles, key=lambda t: -cost[t]):
            w = loads.index(min(loads))
            lists[w].append(t)
            loads[w] += cost[t]
        for w in range(nwarps):
            wtile += sorted(lists[w])
            wptr.append(len(wtile))
    return np.array(wptr), np.array(wtile)


class _GatherTC(KernelFamily):
    device = "cuda"
    dtypes = ("fp16",)
    template = "cuda_gather_tc.cu.j2"

    def _geometry(self, spec: KernelSpec) -> dict:
        raise NotImplementedError

    def render(self, spec: KernelSpec, packed: PackedWeight) -> list[GeneratedSource]:
        g = self._geometry(spec)
        tptr, units = _tables(spec, packed)
        if g["A_MODE"] == "xs":
            wptr, wtile = _xw_tables(tptr, g["WARPS_M"], -g["SPC"])
            ctx = base_ctx(spec, packed)
            ctx.update(BM=g["BM"], BN=g["BN"], KS=g["KS"], NWARPS=g["WARPS_M"], WST=g["STAGES"],
                       ntiles=len(tptr) - 1, tptr=fmt_array(tptr), units=fmt_array(units), nunits=int(units.size),
                       unit_type=index_ctype(int(units.max()) if units.size else 0), nchunks=-g["SPC"],
                       wptr=fmt_array(wptr), wtile=fmt_array(wtile), tile_type=index_ctype(len(tptr)),
                       EPI16=g["BN"] % 32 == 0)
            return source(spec, render_template("cuda_bcsr_xw.cu.j2", **ctx))
        chunk_ptr, step_tile, step_u = _chunks(tptr, g["KS"] if g["A_MODE"] == "xt" else 1, g["SPC"])
        ctx = base_ctx(spec, packed)
        ctx.update(g)
        ctx.update(ntiles=len(tptr) - 1, tptr=fmt_array(tptr), units=fmt_array(units), nunits=int(units.size),
                   unit_type=index_ctype(int(units.max()) if units.size else 0),
                   nchunks=len(chunk_ptr) - 1, chunk_ptr=fmt_array(chunk_ptr), nsteps=len(step_tile),
                   step_tile=fmt_array(step_tile), step_u=fmt_array(step_u),
                   tile_type=index_ctype(len(tptr)), EPI16=(g["BN"] // g["WARPS_N"]) % 32 == 0)
        return source(spec, render_template(self.template, **ctx))

    def cost(self, spec: KernelSpec, packed: PackedWeight, M: int) -> float:
        g = self._geometry(spec)
        tptr, units = _tables(spec, packed)
        BN = g["BN"]
        if spec.pattern.kind == "block":
            work = int(units.size) * g["KS"] * BN
        else:
            steps = sum(-(-int(tptr[i + 1] - tptr[i]) // g["KS"]) for i in range(len(tptr) - 1))
            work = steps * g["KS"] * BN
        eff = min(1.0, BN / 64) * min(1.0, g["BM"] / 128)
        return roofline(M, spec.K, spec.N, work, "tc", eff, spec.dtype, packed.values.nbytes // 2,
                        spec.epilogue.residual, launches=2 if g["A_MODE"] == "xt" else 1)


@register_family
class CudaBcsrTC(_GatherTC):
    """Block-sparse (BCSC) fp16 on tensor cores: mma.sync m16n8k16, ldmatrix, cp.async pipeline."""
    name = "cuda_bcsr_tc"
    patterns = ("block",)

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        h, w = pattern.block
        if h % 16 or h > 128 or w % 16 or w > 128:
            return f"{self.name} needs block sides that are multiples of 16 up to 128, not {h}x{w}"
        if K % 8 or N % 8:
            return f"{self.name} needs K and N multiples of 8 (16-byte rows), not K={K}, N={N}"
        return None

    def tile_candidates(self, pattern, K, N, dtype):
        """(BM, WARPS_M, WARPS_N, STAGES, SPC, XC): XC > 0 keeps the CTA's X strip resident, XC chunks."""
        BN, KS = _bn_ks(pattern)
        base = tc_candidates(BN, KS)
        plain = [c + (spc, 0) for spc in SPC_CHOICES for c in base[:4]] + [c + (SPC_CHOICES[0], 0) for c in base[4:]]
        xs = xs_candidates(BN, KS, K)
        return plain[:3] + xs[:6] + plain[3:] + xs[6:]

    def _geometry(self, spec):
        BN, KS = _bn_ks(spec.pattern)
        BM, WM, WN, ST, SPC, XC = spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0]
        return dict(BM=BM, BN=BN, KS=KS, WARPS_M=WM, WARPS_N=WN, STAGES=ST, SPC=-XC if XC else SPC,
                    A_MODE="xs" if XC else "x")


@register_family
class CudaTileTC(_GatherTC):
    """Tile-wise (SC'20) fp16 on tensor cores: live rows of each G-column tile gathered from X^T."""
    name = "cuda_tile"
    patterns = ("tile",)

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        G = pattern.granularity
        if G % 16 or G > 256:
            return f"{self.name} needs a granularity that is a multiple of 16 up to 256, not {G}"
        if N % 8:
            return f"{self.name} needs N a multiple of 8, not {N}"
        return None

    def tile_candidates(self, pattern, K, N, dtype):
        BN = pattern.granularity
        out = []
        for KS in (32, 64, 16):
            base = tc_candidates(BN, KS)
            for spc in ((0, 8) if KS == 32 else (0,)):
                out += [(c[0], KS) + c[1:] + (spc,) for c in base[:4]]
        return out

    def _geometry(self, spec):
        BM, KS, WM, WN, ST, SPC = spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0]
        return dict(BM=BM, BN=spec.pattern.granularity, KS=KS, WARPS_M=WM, WARPS_N=WN, STAGES=ST, SPC=SPC,
                    A_MODE="xt")


class _GatherSIMT(KernelFamily):
    device = "cuda"
    dtypes = ("fp32", "fp16")

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        BN, _ = _bn_ks(pattern)
        if BN not in (8, 16, 32, 64, 128, 256):
            return f"{self.name} needs a column tile of 8..256 (power of two), not {BN}"
        if pattern.kind == "block" and pattern.block[0] > 128:
            return f"{self.name} needs block height <= 128"
        return None

    def _geometry(self, spec):
        BN, KS = _bn_ks(spec.pattern)
        tile = spec.tile or self.tile_candidates(spec.pattern, spec.K, spec.N, spec.dtype)[0]
        BM = tile[0]
        if spec.pattern.kind == "tile":
            KS = tile[1]
        return dict(BM=BM, BN=BN, KS=KS, NTHREADS=256, A_MODE="x" if spec.pattern.kind == "block" else "xt")

    def render(self, spec, packed):
        g = self._geometry(spec)
        tptr, units = _tables(spec, packed)
        ctx = base_ctx(spec, packed)
        ctx.update(g)
        ctx.update(ntiles=len(tptr) - 1, tptr=fmt_array(tptr), units=fmt_array(units), nunits=int(units.size),
                   unit_type=index_ctype(int(units.max()) if units.size else 0))
        return source(spec, render_template("cuda_gather_simt.cu.j2", **ctx))

    def cost(self, spec, packed, M):
        g = self._geometry(spec)
        tptr, units = _tables(spec, packed)
        work = int(units.size) * (g["KS"] if spec.pattern.kind == "block" else 1) * g["BN"]
        return roofline(M, spec.K, spec.N, work, "simt", 1.0, spec.dtype, packed.values.nbytes, spec.epilogue.residual)


def _simt_bm(BN: int) -> list[int]:
    return [bm for bm in (64, 32, 128) if bm * BN >= 256 and bm * BN // 256 <= 64]


@register_family
class CudaBcsrFP32(_GatherSIMT):
    """Block-sparse (BCSC), exact fp32 FMA on CUDA cores (fp32 or fp16 I/O); any K, N."""
    name = "cuda_bcsr_fp32"
    patterns = ("block",)

    def tile_candidates(self, pattern, K, N, dtype):
        BN, _ = _bn_ks(pattern)
        return [(bm,) for bm in _simt_bm(BN)]


@register_family
class CudaTileFP32(_GatherSIMT):
    """Tile-wise (SC'20), exact fp32 FMA on CUDA cores (fp32 or fp16 I/O); any K, N."""
    name = "cuda_tile_fp32"
    patterns = ("tile",)

    def tile_candidates(self, pattern, K, N, dtype):
        return [(bm, 16) for bm in _simt_bm(pattern.granularity)]
