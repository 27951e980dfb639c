"""Conv (groups, strides, pads, dilations: analysed per channel) and pooling.

Facts are kept per (batch, channel): spatially every output position is assumed to
meet every input position of the channels it reads (conservative for strides,
pads and dilations; exact for channel pruning, which is what compaction uses).
"""
from __future__ import annotations

import numpy as np

from ..masks import bool_matmul
from ..registry import rule


def _channel(mask: np.ndarray) -> np.ndarray:
    """[N, C, *spatial] -> [N, C] (any over spatial)."""
    if mask.ndim <= 2:
        return mask.reshape((1,) * (2 - mask.ndim) + mask.shape)
    return mask.any(axis=tuple(range(2, mask.ndim)))


def _spatial(mask2: np.ndarray, rank: int) -> np.ndarray:
    return mask2.reshape(mask2.shape + (1,) * (rank - 2))


@rule("Conv")
def conv(ctx):
    rx, rw = ctx.in_rank(0), ctx.in_rank(1)
    if rx is None or rw is None or rx < 3 or rw != rx:
        return
    wshape = ctx.in_shape(1)
    group = int(ctx.attr("group", 1))
    M, Cg = wshape[0], wshape[1]
    if not isinstance(M, int) or not isinstance(Cg, int) or M <= 0 or Cg <= 0 or M % group:
        return
    C = Cg * group
    x = np.broadcast_to(_channel(ctx.live(0)), (_channel(ctx.live(0)).shape[0], C))
    w = ctx.live(1)
    w_any = w.reshape(w.shape[:2] + (-1,)).any(axis=-1)  # [M or 1, Cg or 1]
    w_any = np.broadcast_to(w_any, (M, Cg))
    u = np.broadcast_to(_channel(ctx.out_used(0)), (_channel(ctx.out_used(0)).shape[0], M))
    Mg = M // group
    nz = np.zeros((x.shape[0], M), bool)
    x_used = np.zeros((u.shape[0], C), bool)
    w_used = np.zeros((M, Cg), bool)
    for g in range(group) if group <= 64 else ():
        xs = x[:, g * Cg:(g + 1) * Cg]
        ws = w_any[g * Mg:(g + 1) * Mg]  # [Mg, Cg]
        us = u[:, g * Mg:(g + 1) * Mg]
        nz[:, g * Mg:(g + 1) * Mg] = bool_matmul(xs, ws.T)
        x_used[:, g * Cg:(g + 1) * Cg] = bool_matmul(us, ws)
        w_used[g * Mg:(g + 1) * Mg] = bool_matmul(us.T, xs)
    if group > 64:  # depthwise-like: vectorised per group
        xs = x.reshape(x.shape[0], group, Cg)
        ws = w_any.reshape(group, Mg, Cg)
        us = u.reshape(u.shape[0], group, Mg)
        nz = np.einsum("ngc,gmc->ngm", xs.astype(np.float32), ws.astype(np.float32)).reshape(-1, M) > 0
        x_used = np.einsum("ngm,gmc->ngc", us.astype(np.float32), ws.astype(np.float32)).reshape(-1, C) > 0
        w_used = np.einsum("ngm,ngc->gmc", us.astype(np.float32), xs.astype(np.float32)).reshape(M, Cg) > 0
    if ctx.has_input(2):
        nz = nz | ctx.live(2).reshape(1, -1)
    ctx.narrow_output(0, nonzero=_spatial(nz, ctx.out_rank(0) or rx))
    ctx.narrow_input(0, used=_spatial(x_used, rx))
    ctx.narrow_input(1, used=w_used.reshape(w_used.shape + (1,) * (rw - 2)))
    if ctx.has_input(2):
        ctx.narrow_input(2, used=u.any(axis=0))


@rule("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")
def pool(ctx):
    """Per channel: zero in, zero out (padding adds zeros or is ignored); used per channel."""
    rx = ctx.in_rank(0)
    if rx is None or rx < 3:
        return
    ctx.narrow_output(0, nonzero=_spatial(_channel(ctx.live(0)), ctx.out_rank(0) or rx))
    if ctx.has_output(1) and ctx.out_used(1).any():
        return  # MaxPool indices read positions of every element
    ctx.narrow_input(0, used=_spatial(_channel(ctx.out_used(0)), rx))
