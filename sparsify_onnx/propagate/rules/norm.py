"""Normalisations and Softmax: they create no zeros from zero inputs, and they
couple every element of the normalised axes (no backward narrowing across them)."""
from __future__ import annotations

import numpy as np

from ..masks import unbroadcast
from ..registry import rule


def _norm_axes(rank: int, axis: int) -> tuple[int, ...]:
    axis = axis % rank
    return tuple(range(axis, rank))


@rule("LayerNormalization")
def layer_norm(ctx):
    """y = (x - mean) / std * scale + bias over axes [axis, rank)."""
    r = ctx.in_rank(0)
    if r is None or r == 0:
        return
    axes = _norm_axes(r, int(ctx.attr("axis", -1)))
    scale = ctx.live(1)
    has_b = ctx.has_input(2)
    nz = scale | ctx.live(2) if has_b else scale
    ctx.narrow_output(0, nonzero=nz)  # input zeros never make output zeros
    if any(ctx.has_output(i) and ctx.out_used(i).any() for i in (1, 2)):
        return  # mean / inv-std outputs read every element
    u = ctx.out_used(0)
    # x[row, j] influences every output of its row; the row matters where some output
    # in it is used and scaled by a live scale
    row = (u & scale).any(axis=axes, keepdims=True) if u.ndim == r else np.ones((1,) * r, bool)
    ctx.narrow_input(0, used=row)
    ctx.narrow_input(1, used=unbroadcast(u, ctx.mshape_in(1)))
    if ctx.has_input(2):
        ctx.narrow_input(2, used=unbroadcast(u, ctx.mshape_in(2)))


@rule("BatchNormalization")
def batch_norm(ctx):
    """Inference: y = a * x + b per channel, a = scale / sqrt(var + eps), b = B - mean * a.

    Output channel c is zero where x is zero and b[c] == 0 (taken as exact only when B[c]
    and (mean[c] or scale[c]) are exactly zero, so no rounding can make it non-zero).
    """
    r = ctx.in_rank(0)
    if r is None or r < 2:
        return
    training = int(ctx.attr("training_mode", 0)) or any(ctx.has_output(i) and ctx.out_used(i).any()
                                                      for i in range(1, ctx.n_outputs))
    shape_c = (1, -1) + (1,) * (r - 2)
    vals = [ctx.const(i) for i in range(1, 5)]
    if not training and all(v is not None for v in vals):
        scale, bias, mean, var = (np.asarray(v, dtype=np.float64).reshape(-1) for v in vals)
        a_zero = scale == 0
        b_zero = (bias == 0) & ((mean == 0) | a_zero)
        x_live = ctx.live(0)
        nz = (x_live & ~a_zero.reshape(shape_c)) | ~b_zero.reshape(shape_c)
        ctx.narrow_output(0, nonzero=nz)
        u = ctx.out_used(0)
        ctx.narrow_input(0, used=u & ~a_zero.reshape(shape_c))
    elif not training:
        ctx.narrow_input(0, used=ctx.out_used(0))
    if training:
        return
    u = ctx.out_used(0)
    ch = u.any(axis=tuple(a for a in range(u.ndim) if a != 1)) if u.ndim == r else np.ones((1,), bool)
    for i in range(1, 5):
        if ctx.has_input(i):
            ctx.narrow_input(i, used=ch)


@rule("InstanceNormalization")
def instance_norm(ctx):
    """Normalises each (n, c) over spatial axes; scale/bias per channel."""
    r = ctx.in_rank(0)
    if r is None or r < 3:
        return
    shape_c = (1, -1) + (1,) * (r - 2)
    scale, bias = ctx.live(1).reshape(shape_c), ctx.live(2).reshape(shape_c)
    ctx.narrow_output(0, nonzero=scale | bias)
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=(u & scale).any(axis=tuple(range(2, r)), keepdims=True))
    ch = u.any(axis=tuple(a for a in range(u.ndim) if a != 1))
    ctx.narrow_input(1, used=ch)
    ctx.narrow_input(2, used=ch)


@rule("Softmax", "LogSoftmax")
def softmax(ctx):
    """No zeros created (exp > 0); the input row along the axis is used when any output of it is."""
    r = ctx.in_rank(0)
    if r is None or r == 0:
        return
    if ctx.opset < 13:
        axes = _norm_axes(r, int(ctx.attr("axis", 1)))  # coerced to 2-D at axis
    else:
        axes = ((int(ctx.attr("axis", -1)) % r),)
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=u.any(axis=axes, keepdims=True))
