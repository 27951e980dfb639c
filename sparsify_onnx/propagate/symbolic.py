"""Symbolic shape values: monomials (int coefficient x product of symbols).

Used to constant-fold shape computations (Shape -> Gather -> Concat -> Reshape)
when some dims are symbolic, and to relate the axes of a Reshape.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import itertools

import numpy as np

_unique = itertools.count()


@dataclass(frozen=True)
class Mono:
    coef: int
    syms: tuple = ()  # sorted symbol names (with repetition)

    @staticmethod
    def of(dim) -> "Mono":
        if isinstance(dim, Mono):
            return dim
        if dim is None or (isinstance(dim, str) and not dim):
            return Mono(1, (f"?{next(_unique)}",))
        if isinstance(dim, str):
            return Mono(1, (dim,))
        return Mono(int(dim))

    @property
    def concrete(self) -> bool:
        return not self.syms

    def __mul__(self, other: "Mono") -> "Mono":
        other = Mono.of(other)
        return Mono(self.coef * other.coef, tuple(sorted(self.syms + other.syms)))

    def div(self, other: "Mono") -> "Mono | None":
        other = Mono.of(other)
        if other.coef == 0 or self.coef % other.coef:
            return None
        c = Counter(self.syms)
        c.subtract(Counter(other.syms))
        if any(v < 0 for v in c.values()):
            return None
        return Mono(self.coef // other.coef, tuple(sorted(c.elements())))

    def __int__(self) -> int:
        if self.syms:
            raise ValueError("symbolic")
        return self.coef

    def __repr__(self) -> str:
        if not self.syms:
            return str(self.coef)
        s = "*".join(self.syms)
        return s if self.coef == 1 else f"{self.coef}*{s}"


def prod(monos) -> Mono:
    out = Mono(1)
    for m in monos:
        out = out * Mono.of(m)
    return out


def mono_array(values) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        out[idx] = Mono.of(arr[idx])
    return out


def is_concrete(arr: np.ndarray) -> bool:
    return all(m.concrete for m in arr.flat)


def to_ints(arr: np.ndarray) -> np.ndarray:
    return np.array([int(m) for m in arr.flat], dtype=np.int64).reshape(arr.shape)


def dims_monos(dims) -> list[Mono]:
    return [Mono.of(d if not (isinstance(d, (int, np.integer)) and d <= 0) else None) for d in dims]


def reshape_groups(in_dims: list[Mono], out_dims: list[Mono]):
    """Split the axes of a reshape into contiguous groups with equal products.

    Returns a list of (in_axes, out_axes) or None when they cannot be matched.
    Size-1 concrete axes join the neighbouring group.
    """
    groups = []
    i = j = 0
    n, m = len(in_dims), len(out_dims)
    while i < n or j < m:
        gi, gj = [], []
        pi, pj = Mono(1), Mono(1)
        # take at least one axis from each side (if available)
        if i < n:
            gi.append(i); pi = pi * in_dims[i]; i += 1
        if j < m:
            gj.append(j); pj = pj * out_dims[j]; j += 1
        guard = 0
        while pi != pj:
            guard += 1
            if guard > 64:
                return None
            # grow the side with the "smaller" product; symbolic: grow whichever can
            if pj.div(pi) is not None and i < n:
                gi.append(i); pi = pi * in_dims[i]; i += 1
            elif pi.div(pj) is not None and j < m:
                gj.append(j); pj = pj * out_dims[j]; j += 1
            elif i < n and (j >= m or _size_hint(pi) <= _size_hint(pj)):
                gi.append(i); pi = pi * in_dims[i]; i += 1
            elif j < m:
                gj.append(j); pj = pj * out_dims[j]; j += 1
            else:
                return None
        # absorb trailing size-1 concrete axes into this group
        while i < n and in_dims[i] == Mono(1) and (j >= m or out_dims[j] != Mono(1)):
            gi.append(i); i += 1
        while j < m and out_dims[j] == Mono(1) and (i >= n or in_dims[i] != Mono(1)):
            gj.append(j); j += 1
        groups.append((gi, gj))
    return groups


def _size_hint(m: Mono) -> int:
    return m.coef * (1 << 20) ** len(m.syms)
