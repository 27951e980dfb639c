"""Packed weight formats, shared by every device (see docs/architecture.md, "Packing formats").

`pack(W, pattern)` turns an already pruned effective weight ``W[K, N]`` into a
`PackedWeight`: ``values`` (run-time input of the op, float32 by default) and
``tables`` (index tables baked into the generated source, int32 unless noted).
The zeros of W define the exact pattern: a block / tile row is kept iff it holds
any non-zero. `unpack(packed)` gives W back (for tests).

Formats (W is [K, N]):

- block (h, w): BCSC. K and N are padded up to Kp, Np (multiples of h, w) with
  zeros. ``col_ptr[Np/w + 1]``, ``row_idx[nnzb]`` (block-row index, ascending
  within a column block); ``values[nnzb, h, w]``, each block row-major.
- unstructured: CSC. ``col_ptr[N + 1]``, ``row_idx[nnz]`` (ascending within a
  column); ``values[nnz]``.
- nm (n of every m along K): K padded to Kp (multiple of m). ``values[Kp/m*n, N]``
  (the kept values of each group, in ascending offset order), ``idx[Kp/m*n, N]``
  (uint8 offset within the group). A group with fewer than n non-zeros is
  filled with explicit zeros at its lowest free offsets.
- tile (G, SC'20): N padded to Np (multiple of G), cut into tiles of G columns;
  tile t keeps the K rows where any of its columns is non-zero.
  ``tile_ptr[Np/G + 1]``, ``rows[sum_t rows_t]`` (ascending within a tile);
  ``values[sum_t rows_t, G]``.
- dense: ``values[K, N]`` (no tables).
"""
from __future__ import annotations

import numpy as np

from ..errors import SparsifyError
from ..pattern import Pattern
from .registry import PackedWeight

__all__ = ["pack", "unpack", "padded_shape", "PackError"]


class PackError(SparsifyError, ValueError):
    """The weight does not fit the pattern's format (a SparsifyError, and a ValueError for callers)."""


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def padded_shape(pattern: Pattern, K: int, N: int) -> tuple[int, int]:
    """(Kp, Np): the shape the packed format works in."""
    if pattern.kind == "block":
        h, w = pattern.block
        return _ceil(K, h), _ceil(N, w)
    if pattern.kind == "nm":
        return _ceil(K, pattern.m), N
    if pattern.kind == "tile":
        return K, _ceil(N, pattern.granularity)
    return K, N


def pack(W: np.ndarray, pattern: Pattern, *, dtype=np.float32) -> PackedWeight:
    W = np.asarray(W)
    if W.ndim != 2:
        raise PackError(f"pack expects a 2-D weight [K, N], got shape {W.shape}")
    K, N = W.shape
    kind = pattern.kind
    Kp, Np = padded_shape(pattern, K, N)
    Wp = np.zeros((Kp, Np), dtype=dtype)
    Wp[:K, :N] = W
    nz = Wp != 0

    if kind == "block":
        h, w = pattern.block
        if h <= 0 or w <= 0:
            raise PackError(f"bad block size {pattern.block}")
        blocks = Wp.reshape(Kp // h, h, Np // w, w).transpose(2, 0, 1, 3)  # [nbc, nbr, h, w]
        keep = nz.reshape(Kp // h, h, Np // w, w).any(axis=(1, 3)).T  # [nbc, nbr]
        col_ptr = np.zeros(Np // w + 1, dtype=np.int32)
        col_ptr[1:] = np.cumsum(keep.sum(axis=1))
        cb, rb = np.nonzero(keep)  # row-major over [nbc, nbr] -> grouped by column block, rows ascending
        values = np.ascontiguousarray(blocks[cb, rb], dtype=dtype).reshape(-1, h, w)
        return PackedWeight(pattern, K, N, values, {"col_ptr": col_ptr, "row_idx": rb.astype(np.int32)},
                            nnz=int(keep.sum()) * h * w)

    if kind == "unstructured":
        cols, rows = np.nonzero(nz.T)  # column-major order
        col_ptr = np.zeros(N + 1, dtype=np.int32)
        col_ptr[1:] = np.cumsum(nz.sum(axis=0))
        values = np.ascontiguousarray(Wp[rows, cols], dtype=dtype)
        return PackedWeight(pattern, K, N, values, {"col_ptr": col_ptr, "row_idx": rows.astype(np.int32)},
                            nnz=int(nz.sum()))

    if kind == "nm":
        n, m = pattern.n, pattern.m
        if not (0 < n <= m <= 256):
            raise PackError(f"bad n:m pattern {n}:{m}")
        G = Kp // m
        g = nz.reshape(G, m, N)
        counts = g.sum(axis=1)
        if (counts > n).any():
            gi, ci = np.argwhere(counts > n)[0]
            raise PackError(
                f"weight does not fit {n}:{m}: group {gi} (rows {gi * m}..{gi * m + m - 1}) of column {ci} "
                f"has {int(counts[gi, ci])} non-zeros", hint="prune with pattern nm first")
        # order offsets: non-zeros first (by offset), then zeros (by offset); keep the first n, sort ascending
        key = (~g).astype(np.int64) * m + np.arange(m)[None, :, None]
        sel = np.sort(np.argsort(key, axis=1, kind="stable")[:, :n, :], axis=1)  # [G, n, N]
        vals = np.take_along_axis(Wp.reshape(G, m, N), sel, axis=1)
        values = np.ascontiguousarray(vals.reshape(G * n, N), dtype=dtype)
        idx = np.ascontiguousarray(sel.reshape(G * n, N).astype(np.uint8))
        return PackedWeight(pattern, K, N, values, {"idx": idx}, nnz=int(nz.sum()))

    if kind == "tile":
        G = pattern.granularity
        if not G or G <= 0:
            raise PackError(f"bad tile granularity {G}")
        T = Np // G
        keep = nz.reshape(Kp, T, G).any(axis=2).T  # [T, K]
        tile_ptr = np.zeros(T + 1, dtype=np.int32)
        tile_ptr[1:] = np.cumsum(keep.sum(axis=1))
        ti, rows = np.nonzero(keep)
        values = np.ascontiguousarray(Wp.reshape(Kp, T, G)[rows, ti, :], dtype=dtype).reshape(-1, G)
        return PackedWeight(pattern, K, N, values, {"tile_ptr": tile_ptr, "rows": rows.astype(np.int32)},
                            nnz=int(nz.sum()))

    if kind in ("dense", "channel"):
        return PackedWeight(pattern, K, N, np.ascontiguousarray(W, dtype=dtype), {}, nnz=int(nz.sum()))

    raise PackError(f"no packing format for pattern {kind!r}")


def unpack(packed: PackedWeight) -> np.ndarray:
    """The effective [K, N] weight of a packed one (float32/the values' dtype)."""
    p, K, N, v, t = packed.pattern, packed.K, packed.N, packed.values, packed.tables
    Kp, Np = padded_shape(p, K, N)
    W = np.zeros((Kp, Np), dtype=v.dtype)
    if p.kind == "block":
        h, w = p.block
        col_ptr, row_idx = t["col_ptr"], t["row_idx"]
        vals = v.reshape(-1, h, w)
        for j in range(len(col_ptr) - 1):
            for b in range(col_ptr[j], col_ptr[j + 1]):
                r = int(row_idx[b])
                W[r * h:(r + 1) * h, j * w:(j + 1) * w] = vals[b]
    elif p.kind == "unstructured":
        col_ptr, row_idx = t["col_ptr"], t["row_idx"]
        for j in range(N):
            s, e = col_ptr[j], col_ptr[j + 1]
            W[row_idx[s:e], j] = v[s:e]
    elif p.kind == "nm":
        n, m = p.n, p.m
        G = Kp // m
        idx = t["idx"].reshape(G, n, N).astype(np.int64)
        Wg = np.zeros((G, m, N), dtype=v.dtype)
        np.put_along_axis(Wg, idx, v.reshape(G, n, N), axis=1)
        W = Wg.reshape(Kp, N)
    elif p.kind == "tile":
        G = p.granularity
        tile_ptr, rows = t["tile_ptr"], t["rows"]
        vals = v.reshape(-1, G)
        for ti in range(len(tile_ptr) - 1):
            s, e = tile_ptr[ti], tile_ptr[ti + 1]
            W[rows[s:e], ti * G:(ti + 1) * G] = vals[s:e]
    else:
        W = v.reshape(K, N).copy()
    return W[:K, :N]
