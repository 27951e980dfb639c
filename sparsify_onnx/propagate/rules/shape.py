"""Data movement: Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Concat, Split,
Slice, Gather, Expand, Pad, Shape, Size, Tile.

Masks move with the data. Reshape relates axes through groups of equal products
(symbolic dims kept as symbols, shapes from Shape->Gather->Concat chains folded);
a group holding a symbolic axis is merged conservatively (any).
"""
from __future__ import annotations

import numpy as np

from ..folding import slice_indices
from ..masks import full_on, to_rank
from ..registry import rule
from ..symbolic import Mono, dims_monos, prod, reshape_groups


@rule("Transpose")
def transpose(ctx):
    r = ctx.in_rank(0)
    if r is None:
        return
    perm = ctx.attr("perm") or list(reversed(range(r)))
    ctx.narrow_output(0, nonzero=np.transpose(ctx.live(0), perm))
    inv = np.argsort(perm)
    ctx.narrow_input(0, used=np.transpose(ctx.out_used(0), inv))


@rule("Shape", "Size")
def shape_op(ctx):
    ctx.narrow_input(0, used=np.zeros((), bool))  # only the shape is read, never a value


# ---- reshape family -------------------------------------------------------------
def _move(mask, in_dims, out_dims, in_mshape, out_mshape):
    """Map a mask through a reshape in_dims -> out_dims (lists of Mono). None: no facts."""
    groups = reshape_groups(in_dims, out_dims)
    if groups is None:
        return None
    m = full_on(mask, in_mshape)
    sizes_out = []
    for gi, gj in groups:
        symbolic = not all(in_dims[a].concrete for a in gi) or not all(out_dims[b].concrete for b in gj)
        if symbolic:
            m = m.any(axis=tuple(gi), keepdims=True) if gi else m
            sizes_out.extend([1] * len(gj))
        else:
            sizes_out.extend(int(out_dims[b]) for b in gj)
    try:
        out = m.reshape(sizes_out)
    except ValueError:
        return None
    return out


def _reshape_target(ctx, in_dims):
    """The output dims of a Reshape as Monos (0 and -1 resolved), or None."""
    target = ctx.sym(1)
    if target is None:
        return None
    target = list(target.reshape(-1))
    allowzero = int(ctx.attr("allowzero", 0))
    out = []
    neg = None
    for k, t in enumerate(target):
        if t.concrete and t.coef == 0 and not allowzero:
            if k >= len(in_dims):
                return None
            out.append(in_dims[k])
        elif t.concrete and t.coef == -1:
            neg = k
            out.append(None)
        else:
            out.append(t)
    if neg is not None:
        rest = prod([d for d in out if d is not None])
        q = prod(in_dims).div(rest)
        if q is None:
            return None
        out[neg] = q
    return out


def _reshape_like(ctx, out_dims):
    in_shape, out_shape = ctx.in_shape(0), ctx.out_shape(0)
    if in_shape is None or out_dims is None:
        return
    in_dims = dims_monos(in_shape)
    if out_shape is not None and len(out_shape) != len(out_dims):
        return
    # prefer the inferred static dims where our target is symbolic but shape inference knows it
    if out_shape is not None:
        out_dims = [Mono.of(s) if (isinstance(s, (int, np.integer)) and s > 0 and not d.concrete) else d
                    for d, s in zip(out_dims, out_shape)]
    in_ms, out_ms = ctx.mshape_in(0), ctx.mshape_out(0)
    fwd = _move(ctx.live(0), in_dims, out_dims, in_ms, out_ms)
    if fwd is not None:
        ctx.narrow_output(0, nonzero=fwd)
    bwd = _move(ctx.out_used(0), out_dims, in_dims, out_ms, in_ms)
    if bwd is not None:
        ctx.narrow_input(0, used=bwd)


@rule("Reshape")
def reshape(ctx):
    in_shape = ctx.in_shape(0)
    if in_shape is None:
        return
    if ctx.opset < 5:
        shp = ctx.attr("shape")
        if shp is None:
            return
        in_dims = dims_monos(in_shape)
        target = [in_dims[k] if v == 0 else Mono.of(v) for k, v in enumerate(shp)]
        if any(t.concrete and t.coef == -1 for t in target):
            return
        _reshape_like(ctx, target)
        return
    _reshape_like(ctx, _reshape_target(ctx, dims_monos(in_shape)))


@rule("Flatten")
def flatten(ctx):
    in_shape = ctx.in_shape(0)
    if in_shape is None:
        return
    dims = dims_monos(in_shape)
    axis = int(ctx.attr("axis", 1)) % (len(dims) + 1) if dims else 0
    _reshape_like(ctx, [prod(dims[:axis]), prod(dims[axis:])])


def _axes(ctx, input_index, attr="axes"):
    if ctx.opset >= 13 or attr not in ctx.attrs:
        c = ctx.const(input_index) if ctx.has_input(input_index) else None
        return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]
    return list(ctx.attrs[attr])


@rule("Squeeze")
def squeeze(ctx):
    in_shape = ctx.in_shape(0)
    if in_shape is None:
        return
    axes = _axes(ctx, 1)
    r = len(in_shape)
    if axes is None:
        if ctx.has_input(1) and ctx.opset >= 13:
            return
        axes = [k for k, d in enumerate(in_shape) if d == 1]
        if any(not isinstance(d, int) for d in in_shape):
            return  # a symbolic dim might be 1
    axes = tuple(a % r for a in axes)
    x = to_rank(ctx.live(0), r)
    ctx.narrow_output(0, nonzero=x.reshape([s for k, s in enumerate(x.shape) if k not in axes]))
    u = ctx.out_used(0)
    ctx.narrow_input(0, used=np.expand_dims(u, axes) if u.ndim == r - len(axes) else None)


@rule("Unsqueeze")
def unsqueeze(ctx):
    in_shape = ctx.in_shape(0)
    if in_shape is None:
        return
    axes = _axes(ctx, 1)
    if axes is None:
        return
    r = len(in_shape) + len(axes)
    axes = tuple(sorted(a % r for a in axes))
    x = to_rank(ctx.live(0), len(in_shape))
    ctx.narrow_output(0, nonzero=np.expand_dims(x, axes))
    u = to_rank(ctx.out_used(0), r)
    ctx.narrow_input(0, used=u.reshape([s for k, s in enumerate(u.shape) if k not in axes]))


@rule("Concat")
def concat(ctx):
    r = ctx.out_rank(0)
    if r is None:
        return
    axis = int(ctx.attr("axis", 0)) % max(r, 1)
    sizes = []
    for i in range(ctx.n_inputs):
        s = ctx.in_shape(i)
        if s is None or len(s) != r:
            return
        sizes.append(s[axis])
    concrete = all(isinstance(d, int) and d > 0 for d in sizes)
    lives = [to_rank(ctx.live(i), r) for i in range(ctx.n_inputs)]
    u = to_rank(ctx.out_used(0), r)
    if concrete:
        other = np.broadcast_shapes(*[tuple(1 if k == axis else s for k, s in enumerate(m.shape)) for m in lives])
        parts = [np.broadcast_to(m, tuple(sz if k == axis else other[k] for k in range(r)))
                 for m, sz in zip(lives, sizes)]
        ctx.narrow_output(0, nonzero=np.concatenate(parts, axis=axis))
        if u.shape[axis] == sum(sizes):
            off = 0
            for i, sz in enumerate(sizes):
                ctx.narrow_input(i, used=np.take(u, range(off, off + sz), axis=axis))
                off += sz
        else:
            for i in range(ctx.n_inputs):
                ctx.narrow_input(i, used=u)
    else:
        nz = None
        for m in lives:
            mm = m.any(axis=axis, keepdims=True)
            nz = mm if nz is None else (nz | mm)
        ctx.narrow_output(0, nonzero=nz)
        uu = u.any(axis=axis, keepdims=True)
        for i in range(ctx.n_inputs):
            ctx.narrow_input(i, used=uu)


@rule("Split")
def split(ctx):
    s = ctx.in_shape(0)
    if s is None:
        return
    r = len(s)
    axis = int(ctx.attr("axis", 0)) % r
    dim = s[axis]
    if not isinstance(dim, int) or dim <= 0:
        return
    n = ctx.n_outputs
    if ctx.opset >= 13:
        sp = ctx.const(1) if ctx.has_input(1) else None
        sizes = None if sp is None else [int(v) for v in np.asarray(sp).reshape(-1)]
        if sp is None and ctx.has_input(1):
            return
    else:
        sizes = ctx.attr("split")
        sizes = list(sizes) if sizes else None
    if sizes is None:
        per = -(-dim // n)
        sizes = [min(per, dim - k * per) for k in range(n)]
    if sum(sizes) != dim or len(sizes) != n:
        return
    x = full_on(ctx.live(0), tuple(dim if k == axis else m for k, m in enumerate(to_rank(ctx.live(0), r).shape)))
    used_parts = []
    off = 0
    for i, sz in enumerate(sizes):
        ctx.narrow_output(i, nonzero=np.take(x, range(off, off + sz), axis=axis))
        if ctx.has_output(i):
            ui = to_rank(ctx.out_used(i), r)
            used_parts.append(np.broadcast_to(ui, tuple(sz if k == axis else ui.shape[k] for k in range(r))))
        else:
            used_parts.append(None)
        off += sz
    if all(p is not None for p in used_parts):
        other = np.broadcast_shapes(*[tuple(1 if k == axis else d for k, d in enumerate(p.shape)) for p in used_parts])
        parts = [np.broadcast_to(p, tuple(p.shape[axis] if k == axis else other[k] for k in range(r))) for p in used_parts]
        ctx.narrow_input(0, used=np.concatenate(parts, axis=axis))


def _slice_params(ctx, r):
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        vals = [ctx.const(i) if ctx.has_input(i) else None for i in range(1, 5)]
        if vals[0] is None or vals[1] is None or (ctx.has_input(3) and vals[2] is None) or \
                (ctx.has_input(4) and vals[3] is None):
            return None
        starts = [int(v) for v in np.asarray(vals[0]).reshape(-1)]
        ends = [int(v) for v in np.asarray(vals[1]).reshape(-1)]
        axes = [int(v) for v in np.asarray(vals[2]).reshape(-1)] if vals[2] is not None else list(range(len(starts)))
        steps = [int(v) for v in np.asarray(vals[3]).reshape(-1)] if vals[3] is not None else [1] * len(starts)
    return [(a % r, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)]


@rule("Slice")
def slice_(ctx):
    shape = ctx.in_shape(0)
    if shape is None:
        return
    r = len(shape)
    params = _slice_params(ctx, r)
    if params is None:
        return
    x = to_rank(ctx.live(0), r)
    u = to_rank(ctx.out_used(0), r)
    nz = x
    index = {}
    for a, s, e, st in params:
        dim = shape[a]
        if not isinstance(dim, int) or dim <= 0:
            continue  # symbolic axis: uniform mask, slicing keeps it
        index[a] = slice_indices(dim, s, e, st)
    # forward
    for a, idx in index.items():
        if nz.shape[a] > 1:
            nz = np.take(nz, idx, axis=a)
    ctx.narrow_output(0, nonzero=nz)
    # backward: scatter out_used into the taken positions, False elsewhere
    ushape = list(x.shape)
    um = u
    ok = True
    for a in range(r):
        if a in index:
            ushape[a] = shape[a]
            if um.shape[a] not in (1, len(index[a])):
                ok = False
    if not ok:
        return
    back = np.zeros(tuple(ushape[a] if a in index else um.shape[a] for a in range(r)), bool)
    grids = []
    for a in range(r):
        if a in index:
            grids.append(index[a])
        else:
            grids.append(np.arange(back.shape[a]))
    src = um
    for a in index:
        if src.shape[a] == 1:
            src = np.repeat(src, len(index[a]), axis=a)
    back[np.ix_(*grids)] = src if src.shape == tuple(len(g) for g in grids) else np.broadcast_to(src, tuple(len(g) for g in grids))
    ctx.narrow_input(0, used=back)


@rule("Gather")
def gather(ctx):
    shape = ctx.in_shape(0)
    if shape is None:
        return
    r = len(shape)
    axis = int(ctx.attr("axis", 0)) % r
    idx = ctx.const(1)
    x = to_rank(ctx.live(0), r)
    irank = ctx.in_rank(1)
    if irank is None:
        return
    u = to_rank(ctx.out_used(0), r - 1 + irank)
    dim = shape[axis]
    if idx is not None and isinstance(dim, int) and dim > 0:
        idx = np.asarray(idx).astype(np.int64)
        idx = np.where(idx < 0, idx + dim, idx)
        xf = np.broadcast_to(x, tuple(dim if k == axis else x.shape[k] for k in range(r)))
        ctx.narrow_output(0, nonzero=np.take(xf, idx, axis=axis))
        # backward: data[j] used where some out position with idx == j is used
        uf = np.broadcast_to(u, tuple(u.shape[:axis]) + idx.shape + tuple(u.shape[axis + irank:])) \
            if all(us in (1, isz) for us, isz in zip(u.shape[axis:axis + irank], idx.shape)) else None
        if uf is None:
            return
        moved = np.moveaxis(uf.reshape(uf.shape[:axis] + (-1,) + uf.shape[axis + irank:]), axis, 0)  # [I, ...]
        flat = idx.reshape(-1)
        back = np.zeros((dim,) + moved.shape[1:], bool)
        np.logical_or.at(back, flat, moved)
        ctx.narrow_input(0, used=np.moveaxis(back, 0, axis))
    else:
        # unknown indices: any element along the axis may be taken
        xa = x.any(axis=axis, keepdims=True)
        nz = xa.reshape(xa.shape[:axis] + (1,) * irank + xa.shape[axis + 1:])
        ctx.narrow_output(0, nonzero=nz)
        ua = u.any(axis=tuple(range(axis, axis + irank)), keepdims=False) if irank else u
        ctx.narrow_input(0, used=np.expand_dims(ua, axis))


@rule("Expand")
def expand(ctx):
    ctx.narrow_output(0, nonzero=ctx.live(0))
    from ..masks import unbroadcast
    ctx.narrow_input(0, used=unbroadcast(ctx.out_used(0), ctx.mshape_in(0)))


@rule("Tile")
def tile(ctx):
    shape = ctx.in_shape(0)
    reps = ctx.const(1)
    if shape is None or reps is None:
        return
    reps = [int(v) for v in np.asarray(reps).reshape(-1)]
    x = to_rank(ctx.live(0), len(shape))
    full = [shape[a] if (x.shape[a] == 1 and reps[a] != 1 and isinstance(shape[a], int) and shape[a] > 0)
            else x.shape[a] for a in range(len(shape))]
    if any(x.shape[a] == 1 and reps[a] != 1 and not (isinstance(shape[a], int) and shape[a] > 0)
           for a in range(len(shape))):
        # symbolic axis repeated: uniform stays uniform
        pass
    xf = np.broadcast_to(x, full)
    ctx.narrow_output(0, nonzero=np.tile(xf, [r if xf.shape[a] > 1 else 1 for a, r in enumerate(reps)]))
    # backward: an input element is used where any of its copies is used
    u = to_rank(ctx.out_used(0), len(shape))
    back = u
    for a, r in enumerate(reps):
        if back.shape[a] > 1 and r > 1:
            back = back.reshape(back.shape[:a] + (r, back.shape[a] // r) + back.shape[a + 1:]).any(axis=a)
    ctx.narrow_input(0, used=back)


@rule("Pad")
def pad(ctx):
    shape = ctx.in_shape(0)
    if shape is None:
        return
    r = len(shape)
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = list(ctx.attr("pads", []))
        value = float(ctx.attr("value", 0.0))
        axes = list(range(r))
    else:
        p = ctx.const(1)
        if p is None:
            return
        pads = [int(v) for v in np.asarray(p).reshape(-1)]
        value = 0.0
        if ctx.has_input(2):
            c = ctx.const(2)
            if c is None:
                value = float("nan")
            else:
                value = float(np.asarray(c).reshape(-1)[0]) if np.asarray(c).size else 0.0
        if ctx.has_input(3):
            a = ctx.const(3)
            if a is None:
                return
            axes = [int(v) % r for v in np.asarray(a).reshape(-1)]
        else:
            axes = list(range(r))
    n = len(axes)
    if len(pads) != 2 * n:
        return
    begin = dict(zip(axes, pads[:n]))
    end = dict(zip(axes, pads[n:]))
    x = to_rank(ctx.live(0), r)
    u = to_rank(ctx.out_used(0), r)
    fill_nonzero = mode == "constant" and value != 0.0
    nz = x
    back = u
    for a in axes:
        b, e = begin[a], end[a]
        if b == 0 and e == 0:
            continue
        dim = shape[a]
        if not isinstance(dim, int) or dim <= 0 or nz.shape[a] == 1:
            # uniform axis: padded values are copies (edge/reflect/wrap) or the constant
            if fill_nonzero:
                nz = np.ones_like(nz)
            if mode != "constant" or back.shape[a] == 1:
                back = back.any(axis=a, keepdims=True)
            else:
                back = back.any(axis=a, keepdims=True)
            continue
        out_dim = dim + b + e
        src = np.arange(out_dim) - b  # input index each output position copies (constant mode)
        if mode == "constant":
            valid = (src >= 0) & (src < dim)
            take = np.take(nz, np.clip(src, 0, dim - 1), axis=a)
            shp = [1] * r
            shp[a] = out_dim
            valid_b = valid.reshape(shp)
            nz = np.where(valid_b, take, fill_nonzero)
            if back.shape[a] == out_dim:
                back_full = np.zeros(tuple(dim if k == a else back.shape[k] for k in range(r)), bool)
                pos = np.nonzero(valid)[0]
                idx_out = [slice(None)] * r
                idx_in = [slice(None)] * r
                idx_out[a] = pos
                idx_in[a] = src[pos]
                back_full[tuple(idx_in)] = back[tuple(idx_out)]
                back = back_full
            else:
                back = back.any(axis=a, keepdims=True)
        else:
            npmode = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}.get(mode)
            if npmode is None or b < 0 or e < 0:
                return
            width = [(0, 0)] * r
            width[a] = (b, e)
            nz = np.pad(np.broadcast_to(nz, tuple(dim if k == a else nz.shape[k] for k in range(r))), width, mode=npmode)
            back = back.any(axis=a, keepdims=True)  # a border element feeds several outputs
    ctx.narrow_output(0, nonzero=nz)
    ctx.narrow_input(0, used=back)


@rule("Range", "NonZero", "EyeLike")
def index_generators(ctx):
    """Outputs built from input values or shapes as a whole: inputs used iff any output is used."""
    any_used = any(ctx.has_output(i) and ctx.out_used(i).any() for i in range(ctx.n_outputs))
    if not any_used:
        for i in range(ctx.n_inputs):
            ctx.narrow_input(i, used=np.zeros((), bool))
