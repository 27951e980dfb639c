"""MatMul (numpy semantics, batched, 1-D operands) and Gemm.

Forward: out[m, n] may be non-zero iff some k has A[m, k] and B[k, n] both live
(boolean matmul). Backward: A[m, k] is used iff some n has B[k, n] live and
out[m, n] used; B[k, n] iff some m has A[m, k] live and out[m, n] used.
"""
from __future__ import annotations

import numpy as np

from ..masks import bool_matmul, unbroadcast
from ..registry import rule


def _swap(m):
    return np.swapaxes(m, -1, -2)


def _matmul_core(a_live, b_live, out_used):
    """a: [..., M, K], b: [..., K, N], out_used: [..., M, N] (all rank >= 2, broadcastable)."""
    nz = bool_matmul(a_live, b_live)
    a_used = bool_matmul(out_used, _swap(b_live))
    b_used = bool_matmul(_swap(a_live), out_used)
    return nz, a_used, b_used


@rule("MatMul")
def matmul(ctx):
    ra, rb = ctx.in_rank(0), ctx.in_rank(1)
    if ra is None or rb is None or ra == 0 or rb == 0:
        return
    a, b = ctx.live(0), ctx.live(1)
    if ra == 1:
        a = a.reshape((1,) + a.shape)
    if rb == 1:
        b = b.reshape(b.shape + (1,))
    u = ctx.out_used(0)
    # out mask in the [..., M, N] form
    if ra == 1 and rb == 1:
        u2 = u.reshape((1, 1))
    elif ra == 1:
        u2 = np.expand_dims(u, -2)
    elif rb == 1:
        u2 = np.expand_dims(u, -1)
    else:
        u2 = u
    nz, a_used, b_used = _matmul_core(a, b, u2)
    if ra == 1:
        nz = nz[..., 0, :]
        a_used = a_used[..., 0, :]
    if rb == 1:
        nz = nz[..., 0]
        b_used = b_used[..., 0]
    ctx.narrow_output(0, nonzero=nz)
    ctx.narrow_input(0, used=unbroadcast(a_used, ctx.mshape_in(0)))
    ctx.narrow_input(1, used=unbroadcast(b_used, ctx.mshape_in(1)))


@rule("Gemm")
def gemm(ctx):
    if ctx.in_rank(0) != 2 or ctx.in_rank(1) != 2:
        return
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    a, b = ctx.live(0), ctx.live(1)
    a2 = a.T if ta else a
    b2 = b.T if tb else b
    u = ctx.out_used(0)
    nz, a_used, b_used = _matmul_core(a2, b2, u)
    if alpha == 0.0:
        nz = np.zeros_like(nz)
        a_used = np.zeros_like(a_used)
        b_used = np.zeros_like(b_used)
    has_c = ctx.has_input(2) and beta != 0.0
    if has_c:
        nz = nz | ctx.live(2)
    ctx.narrow_output(0, nonzero=nz)
    ctx.narrow_input(0, used=unbroadcast(a_used.T if ta else a_used, ctx.mshape_in(0)))
    ctx.narrow_input(1, used=unbroadcast(b_used.T if tb else b_used, ctx.mshape_in(1)))
    if ctx.has_input(2):
        ctx.narrow_input(2, used=unbroadcast(u if beta != 0.0 else np.zeros_like(u), ctx.mshape_in(2)))
