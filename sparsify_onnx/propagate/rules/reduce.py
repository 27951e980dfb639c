"""Reductions: ReduceSum/Mean/Max/Min/L1/L2/SumSquare/Prod/LogSumExp, ArgMax/ArgMin.

Forward: the result is zero where every reduced element is zero (Prod: where any
is). Backward: an input element is used where its reduced output is used.
"""
from __future__ import annotations

import numpy as np

from ..masks import to_rank
from ..registry import rule

_ZERO_IF_ALL_ZERO = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
                     "ReduceSumSquare"}
# opset from which `axes` is an input instead of an attribute
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _reduce_axes(ctx, r):
    since = _AXES_INPUT_SINCE.get(ctx.op_type, 18)
    if ctx.opset >= since:
        if ctx.has_input(1):
            c = ctx.const(1)
            if c is None:
                return None
            axes = [int(v) for v in np.asarray(c).reshape(-1)]
        else:
            axes = []
    else:
        axes = list(ctx.attr("axes", []) or [])
    if not axes:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            return ()
        axes = list(range(r))
    return tuple(sorted(a % r for a in axes))


@rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare",
      "ReduceProd", "ReduceLogSum", "ReduceLogSumExp")
def reduce_(ctx):
    r = ctx.in_rank(0)
    if r is None:
        return
    axes = _reduce_axes(ctx, r)
    if axes is None:
        return
    keep = int(ctx.attr("keepdims", 1))
    x = to_rank(ctx.live(0), r)
    if axes:
        if ctx.op_type in _ZERO_IF_ALL_ZERO:
            nz = x.any(axis=axes, keepdims=True)
        elif ctx.op_type == "ReduceProd":
            nz = x.all(axis=axes, keepdims=True) if all(x.shape[a] > 1 for a in axes) else x.any(axis=axes, keepdims=True) & x.all(axis=axes, keepdims=True)
        else:
            nz = None
    else:
        nz = x if ctx.op_type in _ZERO_IF_ALL_ZERO | {"ReduceProd"} else None
    u = ctx.out_used(0)
    if not keep and axes:
        if nz is not None:
            nz = nz.reshape([s for k, s in enumerate(nz.shape) if k not in axes])
        u = np.expand_dims(to_rank(u, r - len(axes)), axes)
    else:
        u = to_rank(u, r)
    if nz is not None:
        ctx.narrow_output(0, nonzero=nz)
    ctx.narrow_input(0, used=u)


@rule("ArgMax", "ArgMin")
def argmax(ctx):
    r = ctx.in_rank(0)
    if r is None:
        return
    axis = int(ctx.attr("axis", 0)) % r
    keep = int(ctx.attr("keepdims", 1))
    u = ctx.out_used(0)
    u = to_rank(u, r) if keep else np.expand_dims(to_rank(u, r - 1), axis)
    ctx.narrow_input(0, used=u.any(axis=axis, keepdims=True))


@rule("CumSum")
def cumsum(ctx):
    """Prefix sums couple the whole axis: conservative along it (any), exact elsewhere."""
    r = ctx.in_rank(0)
    ax = ctx.const(1)
    if r is None or r == 0 or ax is None:
        return
    axis = int(np.asarray(ax).reshape(-1)[0]) % r
    x = to_rank(ctx.live(0), r)
    ctx.narrow_output(0, nonzero=x.any(axis=axis, keepdims=True))
    u = to_rank(ctx.out_used(0), r)
    ctx.narrow_input(0, used=u.any(axis=axis, keepdims=True))
