"""Elementwise ops: unary activations, broadcasting binary ops, Where, variadic Sum/Max/Min.

Forward: f(0) = 0 ops keep zeros (output non-zero only where the input is live);
ops with f(0) != 0 (Sigmoid, Exp, Cos, ...) create no zeros. Add/Sub: zero only
where both operands are zero. Mul: zero where either is zero.
Backward: an input element is used where an output element it reaches is used
(reduced over broadcast axes); Mul: not where the other operand is dead.
"""
from __future__ import annotations

import numpy as np

from ..masks import unbroadcast
from ..registry import rule

# f(0) == 0 for every parameter value
ZERO_PRESERVING = ("Relu", "Gelu", "Erf", "Tanh", "Neg", "Abs", "Sqrt", "LeakyRelu", "Identity", "Cast",
                   "Sin", "Sinh", "Asin", "Asinh", "Atan", "Atanh", "Tan", "Sign", "Floor", "Ceil", "Round",
                   "Softsign", "Selu", "Elu", "Celu", "ThresholdedRelu", "HardSwish", "Mish")
# elementwise, but f(0) may be non-zero
NOT_ZERO_PRESERVING = ("Sigmoid", "Exp", "Cos", "Cosh", "Log", "Reciprocal", "HardSigmoid", "Softplus", "Not",
                       "IsNaN", "IsInf", "Acos", "Acosh")


def _out_used(ctx, i=0):
    return ctx.out_used(i) if ctx.has_output(i) else None


@rule(*ZERO_PRESERVING)
@rule("Gelu", "FastGelu", "QuickGelu", domain="com.microsoft")
def zero_preserving_unary(ctx):
    ctx.narrow_output(0, nonzero=ctx.live(0))
    ctx.narrow_input(0, used=ctx.out_used(0))


@rule("CastLike")
def cast_like(ctx):
    ctx.narrow_output(0, nonzero=ctx.live(0))
    ctx.narrow_input(0, used=ctx.out_used(0))
    ctx.narrow_input(1, used=np.zeros((), bool))  # only its dtype is read


@rule(*NOT_ZERO_PRESERVING)
def nonzero_creating_unary(ctx):
    ctx.narrow_input(0, used=ctx.out_used(0))


@rule("Dropout")
def dropout(ctx):
    # inference: identity; training: x * mask / (1 - p) -- zeros kept either way
    ctx.narrow_output(0, nonzero=ctx.live(0))
    mask_used = ctx.has_output(1) and ctx.out_used(1).any()
    if not mask_used:
        ctx.narrow_input(0, used=ctx.out_used(0))


@rule("Clip")
def clip(ctx):
    lo = hi = None
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        if ctx.has_input(1):
            c = ctx.const(1)
            lo = None if c is None else float(np.asarray(c).reshape(-1)[0])
            if c is None:
                lo = float("nan")  # unknown
        if ctx.has_input(2):
            c = ctx.const(2)
            hi = None if c is None else float(np.asarray(c).reshape(-1)[0])
            if c is None:
                hi = float("nan")
    keeps_zero = (lo is None or lo <= 0) and (hi is None or hi >= 0)
    if keeps_zero:
        ctx.narrow_output(0, nonzero=ctx.live(0))
    ctx.narrow_input(0, used=ctx.out_used(0))


@rule("PRelu")
def prelu(ctx):
    ctx.narrow_output(0, nonzero=ctx.live(0))
    ctx.narrow_input(0, used=ctx.out_used(0))
    ctx.narrow_input(1, used=unbroadcast(ctx.out_used(0) & ctx.live(0), ctx.mshape_in(1)))


def _b(ctx, i, mask):
    return unbroadcast(mask, ctx.mshape_in(i))


@rule("Add", "Sub", "Max", "Min", "Sum", "Mean", "Or", "BitwiseOr", "Xor", "BitwiseXor")
def additive(ctx):
    """Zero only where every operand is zero; each operand is used where the output is."""
    nz = None
    for i in range(ctx.n_inputs):
        if ctx.has_input(i):
            nz = ctx.live(i) if nz is None else (nz | ctx.live(i))
    ctx.narrow_output(0, nonzero=nz)
    u = ctx.out_used(0)
    for i in range(ctx.n_inputs):
        if ctx.has_input(i):
            ctx.narrow_input(i, used=_b(ctx, i, u))


@rule("Mul", "And", "BitwiseAnd")
def multiplicative(ctx):
    a, b = ctx.live(0), ctx.live(1)
    ctx.narrow_output(0, nonzero=_bc_and(a, b))
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=_b(ctx, 0, _bc_and(u, b)))
    ctx.narrow_input(1, used=_b(ctx, 1, _bc_and(u, a)))


def _bc_and(x, y):
    return x & y


@rule("Div")
def div(ctx):
    # 0 / b == 0 for b != 0; a dead divisor is zero and gives NaN/inf, which is not zero
    a, b = ctx.live(0), ctx.live(1)
    ctx.narrow_output(0, nonzero=a | ~b)
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=_b(ctx, 0, u))
    ctx.narrow_input(1, used=_b(ctx, 1, u))  # never narrowed by a's zeros: 0/0 is NaN


@rule("Pow")
def pow_(ctx):
    e = ctx.const(1)
    if e is not None and np.all(np.asarray(e) > 0):
        ctx.narrow_output(0, nonzero=ctx.live(0))
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=_b(ctx, 0, u))
    ctx.narrow_input(1, used=_b(ctx, 1, u))


@rule("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Mod", "BitShift")
def compare(ctx):
    u = ctx.out_used(0)
    for i in range(ctx.n_inputs):
        if ctx.has_input(i):
            ctx.narrow_input(i, used=_b(ctx, i, u))


@rule("Where")
def where(ctx):
    cond = ctx.const(0)
    x, y = ctx.live(1), ctx.live(2)
    u = ctx.out_used(0)
    if cond is not None:
        c = np.asarray(cond, dtype=bool)
        nz = (c & x) | (~c & y)
        ctx.narrow_output(0, nonzero=nz)
        ctx.narrow_input(1, used=_b(ctx, 1, _bc_and(u, c)))
        ctx.narrow_input(2, used=_b(ctx, 2, _bc_and(u, ~c)))
    else:
        ctx.narrow_output(0, nonzero=x | y)
        ctx.narrow_input(1, used=_b(ctx, 1, u))
        ctx.narrow_input(2, used=_b(ctx, 2, u))
    ctx.narrow_input(0, used=_b(ctx, 0, u))


@rule("Constant", "ConstantOfShape")
def constant(ctx):
    if ctx.op_type == "ConstantOfShape":
        val = ctx.attr("value")
        if val is None or not np.any(_tensor_array(val)):
            ctx.narrow_output(0, nonzero=np.zeros((), bool))
        ctx.narrow_input(0, used=np.ones((), bool) & ctx.out_used(0).any())


def _tensor_array(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)


@rule("Trilu", since_opset=14)
def trilu(ctx):
    """Keeps the upper (or lower) triangle of the last two axes, zeroes the rest."""
    x = ctx.live(0)
    u = ctx.out_used(0)
    shape = ctx.in_shape(0)
    k = 0
    if ctx.has_input(1):
        c = ctx.const(1)
        if c is None:
            ctx.narrow_output(0, nonzero=x)
            ctx.narrow_input(0, used=u)
            return
        k = int(np.asarray(c).reshape(-1)[0])
    if shape is None or len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape[-2:]):
        ctx.narrow_output(0, nonzero=x)
        ctx.narrow_input(0, used=u)
        return
    n, m = shape[-2], shape[-1]
    tri = np.triu(np.ones((n, m), bool), k) if int(ctx.attr("upper", 1)) else np.tril(np.ones((n, m), bool), k)
    ctx.narrow_output(0, nonzero=x & tri)
    ctx.narrow_input(0, used=u & tri)
