"""Small helpers on compact boolean masks (size-1 axes mean "uniform along this axis")."""
from __future__ import annotations

import numpy as np


def as_mask(m) -> np.ndarray:
    return np.asarray(m, dtype=bool)


def fit(mask, shape) -> np.ndarray | None:
    """Make ``mask`` broadcastable to the mask shape ``shape`` without losing soundness.

    Extra leading axes and axes where ``shape`` has size 1 but the mask does not are
    reduced with ``any`` (both masks are "may" facts, so OR is the conservative merge).
    Returns None when the mask cannot be related to ``shape`` (caller: no narrowing).
    """
    m = as_mask(mask)
    shape = tuple(int(s) for s in shape)
    r = len(shape)
    if m.ndim > r:
        extra = m.ndim - r
        m = m.any(axis=tuple(range(extra)))
    if m.ndim < r:
        m = m.reshape((1,) * (r - m.ndim) + m.shape)
    for ax, (ms, ts) in enumerate(zip(m.shape, shape)):
        if ms == ts or ms == 1:
            continue
        if ts == 1:
            m = m.any(axis=ax, keepdims=True)
        else:
            return None
    return m


def to_rank(mask, rank: int) -> np.ndarray:
    m = as_mask(mask)
    if m.ndim < rank:
        return m.reshape((1,) * (rank - m.ndim) + m.shape)
    if m.ndim > rank:
        return m.any(axis=tuple(range(m.ndim - rank)))
    return m


def unbroadcast(mask, shape) -> np.ndarray:
    """Reduce (any) a mask computed in a broadcast result back to an operand's mask shape."""
    out = fit(mask, shape)
    if out is None:
        return np.ones(tuple(int(s) for s in shape), dtype=bool)
    return out


def bool_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a @ b) > 0 over booleans, broadcasting batch dims (numpy matmul semantics, rank >= 2).

    A mask of size 1 along the contracted axis is uniform along it, so no product is needed:
    any_k(a[m, k] & b[k, n]) = a[m] & any_k(b[k, n]).
    """
    if a.shape[-1] == 1:
        return a & b.any(axis=-2, keepdims=True)
    if b.shape[-2] == 1:
        return a.any(axis=-1, keepdims=True) & b
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"bool_matmul: contracted sizes differ: {a.shape} @ {b.shape}")
    # a single row (activation vector uniform over batch/sequence) against a big mask: select rows
    if all(d == 1 for d in a.shape[:-1]):
        sel = np.flatnonzero(a.reshape(-1))
        out = b[..., sel, :].any(axis=-2, keepdims=True)
        return out.reshape((1,) * max(0, a.ndim - out.ndim) + out.shape)
    if all(d == 1 for d in b.shape[:-2]) and b.shape[-1] == 1:
        sel = np.flatnonzero(b.reshape(-1))
        out = a[..., sel].any(axis=-1, keepdims=True)
        return out.reshape((1,) * max(0, b.ndim - out.ndim) + out.shape)
    k = max(a.shape[-1], b.shape[-2])
    if a.shape[-1] != k:
        a = np.broadcast_to(a, a.shape[:-1] + (k,))
    if b.shape[-2] != k:
        b = np.broadcast_to(b, b.shape[:-2] + (k, b.shape[-1]))
    return np.matmul(a.astype(np.float32), b.astype(np.float32)) > 0


def count_matmul(a: np.ndarray, b: np.ndarray, k_size: int | None = None) -> np.ndarray:
    """Counts of (a @ b) over booleans, as float64 (for MAC statistics).

    ``k_size``: the real length of the contracted axis when both masks are uniform along it.
    """
    if a.shape[-1] == 1 and b.shape[-2] == 1:
        return (a & b).astype(np.float64) * (k_size or 1)
    if a.shape[-1] == 1:
        return a.astype(np.float64) * b.sum(axis=-2, keepdims=True, dtype=np.float64)
    if b.shape[-2] == 1:
        return a.sum(axis=-1, keepdims=True, dtype=np.float64) * b.astype(np.float64)
    if a.shape[-1] == b.shape[-2] and all(d == 1 for d in a.shape[:-1]):
        sel = np.flatnonzero(a.reshape(-1))
        out = np.count_nonzero(b[..., sel, :], axis=-2, keepdims=True).astype(np.float64)
        return out.reshape((1,) * max(0, a.ndim - out.ndim) + out.shape)
    k = max(a.shape[-1], b.shape[-2])
    if a.shape[-1] != k:
        a = np.broadcast_to(a, a.shape[:-1] + (k,))
    if b.shape[-2] != k:
        b = np.broadcast_to(b, b.shape[:-2] + (k, b.shape[-1]))
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def any_except(mask: np.ndarray, keep_axes) -> np.ndarray:
    """any over every axis not in keep_axes (keepdims)."""
    keep = {a % mask.ndim for a in keep_axes} if mask.ndim else set()
    axes = tuple(a for a in range(mask.ndim) if a not in keep)
    return mask.any(axis=axes, keepdims=True) if axes else mask


def full_on(mask: np.ndarray, shape) -> np.ndarray:
    """Broadcast to the full mask shape (materialised)."""
    return np.ascontiguousarray(np.broadcast_to(to_rank(mask, len(shape)), tuple(int(s) for s in shape)))
