"""Sparsifiers (STen's idea): prune a weight to a pattern, and check existing zeros.

All functions take the weight in its *stored* layout and the `reduction_axis`
(the axis a product sums over: MatMul B W[K, N] -> 0; Gemm B -> 0, or 1 with
transB=1; Conv W[O, I/g, kh, kw] -> 1). Views used by the patterns:

- matrix view (block, zero rows/columns): the tensor itself when 2-D; for more
  axes the leading axis against the rest, ``[d0, d1*d2*...]`` (Conv:
  ``[O, I/g*kh*kw]``, one row per filter); a vector is one row.
- [K, N] view (tile): the matrix view when `reduction_axis` is 0, else its
  transpose (Conv: ``[I/g*kh*kw, O]``).
- n:m groups run along `reduction_axis` itself (moved last; for Conv that is
  along the input channels, for every output channel and kernel position). An
  axis length that is not a multiple of m ends with one shorter group, which
  keeps at most n.
- channel(axis): slices ``W.take(i, axis)`` are kept or removed whole.

`reduction_axis=None` means 0 (the MatMul B [K, N] convention).

How many units (elements, blocks, rows-in-tile, slices) are pruned: units are
ranked (magnitude: by L2 norm, smallest first; random: by a random key) and the
number pruned is the one whose element count comes closest to
``round(sparsity * W.size)``, so the achieved density matches the request to
within one unit (edge blocks and tiles are smaller; they are padded with zeros
for the norm). Zeros already in W count as pruned only where they fill a unit.
"""
from __future__ import annotations

import math

import numpy as np

from ..pattern import Pattern

# block / tile / channel patterns: the existing zeros "form the pattern" when the zeros that lie
# outside all-zero units are at most this share of the elements (a few incidental exact zeros in a
# trained weight do not matter; an unstructured-pruned weight does not fit)
STRAY_ZERO_TOLERANCE = 0.01


# ------------------------------------------------------------------------------------------ views

def _axis(reduction_axis: int | None, ndim: int) -> int:
    if ndim == 0:
        return 0
    a = 0 if reduction_axis is None else int(reduction_axis)
    if not -ndim <= a < ndim:
        raise ValueError(f"reduction axis {reduction_axis} out of range for a {ndim}-D tensor")
    return a % ndim


def matrix_view(W: np.ndarray) -> np.ndarray:
    """The 2-D view used by block patterns (see module doc)."""
    if W.ndim == 0:
        return W.reshape(1, 1)
    if W.ndim == 1:
        return W.reshape(1, -1)
    if W.ndim == 2:
        return W
    return W.reshape(W.shape[0], -1)


def kn_view(W: np.ndarray, reduction_axis: int | None) -> np.ndarray:
    """The [K, N] view used by tile-wise sparsity (see module doc)."""
    M = matrix_view(W)
    if W.ndim <= 1:
        return M.T  # a vector is reduced along its only axis
    return M if _axis(reduction_axis, W.ndim) == 0 else M.T


def _abs64(W: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(W, dtype=np.float64))


def _pick(scores: np.ndarray, sizes: np.ndarray, target_zeros: int) -> np.ndarray:
    """Boolean 'prune this unit' over flat units: the lowest scores whose sizes sum closest to target."""
    sizes = np.broadcast_to(sizes, scores.shape).ravel()
    scores = scores.ravel()
    U = scores.size
    prune = np.zeros(U, dtype=bool)
    if U == 0:
        return prune
    if (sizes == sizes[0]).all():  # equal units: no sort needed, a partition finds the j lowest
        j = int(min(U, max(0, math.floor(target_zeros / sizes[0] + 0.5))))
        if j == U:
            prune[:] = True
        elif j > 0:
            prune[np.argpartition(scores, j - 1)[:j]] = True
        return prune
    order = np.argsort(scores, kind="stable")
    cum = np.concatenate([[0], np.cumsum(sizes[order])])
    j = int(np.argmin(np.abs(cum - target_zeros)))  # first index with the smallest gap
    prune[order[:j]] = True
    return prune


def _scores(values_norm: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    if method == "magnitude":
        return values_norm
    if method == "random":
        return rng.random(values_norm.shape)
    raise ValueError(f"unknown method {method!r}")


def _block_grid(M: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded [R, h, C, w] view of M's squares (float64) and the element count of each block [R, C]."""
    r, c = M.shape
    R, C = math.ceil(r / h), math.ceil(c / w)
    P = np.zeros((R * h, C * w), dtype=np.float64)
    P[:r, :c] = np.square(np.asarray(M, dtype=np.float64))
    rows = np.minimum(h, r - np.arange(R) * h)
    cols = np.minimum(w, c - np.arange(C) * w)
    return P.reshape(R, h, C, w), np.outer(rows, cols)


def _tile_grid(KN: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Squares summed per (row k, tile t) [K, T] and each tile's width [T]."""
    K, N = KN.shape
    T = math.ceil(N / G)
    P = np.zeros((K, T * G), dtype=np.float64)
    P[:, :N] = np.square(np.asarray(KN, dtype=np.float64))
    widths = np.minimum(G, N - np.arange(T) * G)
    return P.reshape(K, T, G).sum(axis=2), widths


def _nm_groups(W: np.ndarray, axis: int, m: int) -> tuple[np.ndarray, int]:
    """W with `axis` moved last and padded to a multiple of m, as [..., groups, m] (float64) and the length."""
    X = np.moveaxis(np.asarray(W, dtype=np.float64), axis, -1)
    L = X.shape[-1]
    Lp = math.ceil(L / m) * m
    pad = np.full(X.shape[:-1] + (Lp,), np.nan)
    pad[..., :L] = X
    return pad.reshape(X.shape[:-1] + (Lp // m, m)), L


# ------------------------------------------------------------------------------------------ prune

def prune(W: np.ndarray, pattern: Pattern, sparsity: float, method: str = "magnitude",
          reduction_axis: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return a copy of W (same shape and dtype) pruned to `pattern` at `sparsity` (share of zeros).

    For nm the sparsity is fixed by the pattern (1 - n/m) and `sparsity` is ignored.
    magnitude keeps the units with the largest L2 norm; random keeps a random choice (from `rng`).
    """
    W = np.asarray(W)
    rng = rng if rng is not None else np.random.default_rng(0)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    keep = keep_mask(W, pattern, sparsity, method, reduction_axis, rng)
    out = np.where(keep, W, np.zeros((), dtype=W.dtype)).astype(W.dtype, copy=False)
    return out


def keep_mask(W: np.ndarray, pattern: Pattern, sparsity: float, method: str = "magnitude",
              reduction_axis: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean mask of W's shape: True where `prune` keeps the element."""
    W = np.asarray(W)
    rng = rng if rng is not None else np.random.default_rng(0)
    kind = pattern.kind
    size = W.size
    if size == 0 or kind == "dense":
        return np.ones(W.shape, dtype=bool)
    target = int(round(sparsity * size))

    if kind == "unstructured":
        prune_ = _pick(_scores(_abs64(W), method, rng), np.ones(1, dtype=np.int64), target)
        return ~prune_.reshape(W.shape)

    if kind == "block":
        h, w = pattern.block
        M = matrix_view(W)
        grid, counts = _block_grid(M, h, w)
        norms = np.sqrt(grid.sum(axis=(1, 3)))  # [R, C]
        pr = _pick(_scores(norms, method, rng), counts, target).reshape(norms.shape)
        full = np.repeat(np.repeat(pr, h, axis=0), w, axis=1)[:M.shape[0], :M.shape[1]]
        return ~full.reshape(W.shape)

    if kind == "tile":
        G = pattern.granularity
        KN = kn_view(W, reduction_axis)
        sq, widths = _tile_grid(KN, G)  # [K, T]
        norms = np.sqrt(sq)
        pr = _pick(_scores(norms, method, rng), np.broadcast_to(widths, norms.shape), target)
        pr = pr.reshape(norms.shape)
        full = np.repeat(pr, G, axis=1)[:, :KN.shape[1]]  # [K, N]
        return _from_kn(~full, W, reduction_axis)

    if kind == "channel":
        ax = _channel_axis(pattern, W.ndim)
        X = np.moveaxis(np.asarray(W, dtype=np.float64), ax, 0).reshape(W.shape[ax], -1)
        norms = np.sqrt(np.square(X).sum(axis=1))
        slice_size = size // W.shape[ax]
        pr = _pick(_scores(norms, method, rng), np.full(norms.shape, slice_size), target)
        shape = [1] * W.ndim
        shape[ax] = W.shape[ax]
        return np.broadcast_to(~pr.reshape(shape), W.shape).copy()

    if kind == "nm":
        n, m = pattern.n, pattern.m
        ax = _axis(reduction_axis, W.ndim) if W.ndim else 0
        Wv = W.reshape(1) if W.ndim == 0 else W
        groups, L = _nm_groups(Wv, ax, m)  # [..., g, m], NaN padding
        sc = np.abs(groups) if method == "magnitude" else rng.random(groups.shape)
        sc = np.where(np.isnan(groups), -np.inf, sc)
        # keep the n largest of each group (stable: earlier position wins ties)
        order = np.argsort(-sc, axis=-1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(m).reshape((1,) * (order.ndim - 1) + (m,)), axis=-1)
        keep = (ranks < n).reshape(groups.shape[:-2] + (-1,))[..., :L]
        return np.moveaxis(keep, -1, ax).reshape(W.shape)

    raise ValueError(f"unknown pattern {kind!r}")


def _channel_axis(pattern: Pattern, ndim: int) -> int:
    a = pattern.axis if pattern.axis is not None else 0
    if not -max(ndim, 1) <= a < max(ndim, 1):
        raise ValueError(f"channel axis {a} out of range for a {ndim}-D tensor")
    return a % max(ndim, 1)


def _from_kn(mask_kn: np.ndarray, W: np.ndarray, reduction_axis: int | None) -> np.ndarray:
    """Inverse of kn_view for a mask."""
    if W.ndim <= 1:
        return mask_kn.T.reshape(W.shape)
    M = mask_kn if _axis(reduction_axis, W.ndim) == 0 else mask_kn.T
    return M.reshape(W.shape)


# ------------------------------------------------------------------------------------------- fits

def fits(W: np.ndarray, pattern: Pattern, reduction_axis: int | None = None) -> str | None:
    """None when W's existing zeros already form `pattern`, else a one-line reason.

    Used for a rule without `sparsity` (keep the zeros the model has). dense: always fits.
    unstructured: W has at least one zero. nm: every group of m along the reduction axis has at
    most n non-zeros. block / tile / channel: at least one unit (block, row of a tile, slice) is
    all zero and the zeros lie in such units: at most STRAY_ZERO_TOLERANCE of the elements may be
    zeros elsewhere. A weight without zeros fits only dense: a sparse pattern with nothing to skip
    is almost always a rule that forgot `sparsity:`.
    """
    W = np.asarray(W)
    kind = pattern.kind
    if kind == "dense" or W.size == 0:
        return None
    nz = W != 0
    zeros = int(W.size - nz.sum())
    if kind == "nm":
        n, m = pattern.n, pattern.m
        ax = _axis(reduction_axis, W.ndim) if W.ndim else 0
        groups, _ = _nm_groups(nz.reshape(1) if W.ndim == 0 else nz, ax, m)
        counts = np.nansum(groups, axis=-1)
        bad = int((counts > n).sum())
        if bad:
            return (f"{bad} of {counts.size} groups of {m} along axis {ax} hold more than {n} non-zeros "
                    f"(density {nz.mean():.3f}; {n}:{m} allows at most {n / m:.3f})")
        return None
    if zeros == 0:
        return "it has no zeros (density 1.000), so there is nothing to keep"
    if kind == "unstructured":
        return None
    unit_zero, unit_size, unit_name = _unit_zeros(nz, pattern, reduction_axis)
    if not unit_zero.any():
        return (f"none of its {unit_zero.size} {unit_name} is all zero; its zeros are scattered "
                f"(density {nz.mean():.3f})")
    covered = int((unit_zero * unit_size).sum())
    stray = zeros - covered
    if stray > STRAY_ZERO_TOLERANCE * W.size:
        return (f"{stray / W.size:.1%} of the elements are zeros outside all-zero {unit_name} "
                f"({int(unit_zero.sum())} of {unit_zero.size} {unit_name} are all zero; "
                f"density {nz.mean():.3f})")
    return None


def _unit_zeros(nz: np.ndarray, pattern: Pattern, reduction_axis) -> tuple[np.ndarray, np.ndarray, str]:
    """(is the unit all zero, unit element counts, name) for block / tile / channel."""
    kind = pattern.kind
    if kind == "block":
        h, w = pattern.block
        grid, counts = _block_grid(matrix_view(nz), h, w)
        return grid.sum(axis=(1, 3)) == 0, counts, f"{h}x{w} blocks"
    if kind == "tile":
        G = pattern.granularity
        sq, widths = _tile_grid(kn_view(nz, reduction_axis), G)
        return sq == 0, np.broadcast_to(widths, sq.shape), f"rows of {G}-column tiles"
    if kind == "channel":
        ax = _channel_axis(pattern, nz.ndim)
        X = np.moveaxis(nz, ax, 0).reshape(nz.shape[ax], -1) if nz.ndim else nz.reshape(1, 1)
        return ~X.any(axis=1), np.full(X.shape[0], X.shape[1]), f"slices along axis {ax}"
    raise ValueError(kind)


def describe_zeros(W: np.ndarray, reduction_axis: int | None = None) -> dict:
    """Density and which structures the zeros form (for `inspect`).

    Keys: density, zeros, size, block32x32, block16x16, nm2:4 (each True only when W has zeros and
    they form that structure), zero_rows / zero_cols (all-zero rows / columns of the matrix view),
    rows / cols (the zeros are whole rows / columns), structure (short text summary).
    """
    W = np.asarray(W)
    size = int(W.size)
    nz = W != 0
    nnz = int(nz.sum())
    zeros = size - nnz
    d: dict = {"density": (nnz / size) if size else 1.0, "zeros": zeros, "size": size}
    has = zeros > 0
    d["block32x32"] = bool(has and fits(W, Pattern("block", block=(32, 32))) is None)
    d["block16x16"] = bool(has and fits(W, Pattern("block", block=(16, 16))) is None)
    red_len = W.shape[_axis(reduction_axis, W.ndim)] if W.ndim else 1
    d["nm2:4"] = bool(has and red_len >= 4 and fits(W, Pattern("nm", n=2, m=4), reduction_axis) is None)
    M = matrix_view(nz)
    zr = ~M.any(axis=1)
    zc = ~M.any(axis=0)
    d["zero_rows"] = int(zr.sum())
    d["zero_cols"] = int(zc.sum())
    covered_r = int(zr.sum()) * M.shape[1]
    covered_c = int(zc.sum()) * M.shape[0]
    d["rows"] = bool(has and zr.any() and zeros - covered_r <= STRAY_ZERO_TOLERANCE * size)
    d["cols"] = bool(has and zc.any() and zeros - covered_c <= STRAY_ZERO_TOLERANCE * size)
    parts = []
    if not has:
        parts.append("dense")
    else:
        if d["nm2:4"]:
            parts.append("2:4")
        if d["block32x32"]:
            parts.append("blocks 32x32")
        elif d["block16x16"]:
            parts.append("blocks 16x16")
        if d["rows"]:
            parts.append(f"{d['zero_rows']} zero rows")
        if d["cols"]:
            parts.append(f"{d['zero_cols']} zero cols")
        if not parts:
            parts.append("unstructured")
    d["structure"] = ", ".join(parts)
    return d
