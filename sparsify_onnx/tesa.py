"""TeSA: a tensor with a sparsity attribute (SparTA, OSDI'22).

Two boolean masks broadcastable to the tensor's shape. A symbolic dimension
(batch, sequence) is stored with size 1, meaning "uniform along this axis".

- ``nonzero``: the element may be non-zero (forward facts).
- ``used``: the element may influence a graph output (backward facts).

live = nonzero & used. Masks only ever lose True bits (``narrow``), so
propagation is monotone and a fixpoint terminates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pattern import DENSE, Pattern


def _full(shape) -> np.ndarray:
    return np.ones(tuple(1 if (d is None or not isinstance(d, (int, np.integer)) or d <= 0) else int(d)
                         for d in shape), dtype=bool)


@dataclass
class TeSA:
    name: str
    shape: tuple  # concrete ints or None/str for symbolic dims
    nonzero: np.ndarray
    used: np.ndarray
    pattern: Pattern = DENSE
    dynamic: bool = False
    declared_density: float | None = None  # density the spec declared (for reports)
    narrowed_by: list[str] = field(default_factory=list)  # rule names that narrowed it

    @classmethod
    def dense(cls, name: str, shape) -> "TeSA":
        shape = tuple(shape) if shape is not None else ()
        return cls(name=name, shape=shape, nonzero=_full(shape), used=_full(shape))

    @property
    def mask_shape(self) -> tuple[int, ...]:
        return tuple(1 if (d is None or not isinstance(d, (int, np.integer)) or d <= 0) else int(d)
                     for d in self.shape)

    @property
    def live(self) -> np.ndarray:
        return np.broadcast_to(self.nonzero, self.mask_shape) & np.broadcast_to(self.used, self.mask_shape)

    def density(self) -> float:
        live = self.live
        return float(live.mean()) if live.size else 1.0

    def narrow(self, *, nonzero: np.ndarray | None = None, used: np.ndarray | None = None,
               by: str | None = None) -> bool:
        """AND new facts into the masks. Returns True when a bit was cleared."""
        changed = False
        for attr, new in (("nonzero", nonzero), ("used", used)):
            if new is None:
                continue
            old = getattr(self, attr)
            merged = np.broadcast_to(old, self.mask_shape) & np.broadcast_to(np.asarray(new, dtype=bool),
                                                                               self.mask_shape)
            if merged.sum() < np.broadcast_to(old, self.mask_shape).sum():
                changed = True
            # keep the compact (size-1) representation where the result is uniform
            setattr(self, attr, _compact(merged))
        if changed and by and by not in self.narrowed_by:
            self.narrowed_by.append(by)
        return changed


def _compact(mask: np.ndarray) -> np.ndarray:
    """Collapse axes along which the mask is constant to size 1 (saves memory)."""
    out = np.array(mask, dtype=bool, order="C")  # keeps 0-d masks 0-d (ascontiguousarray would not)
    for ax in range(out.ndim):
        if out.shape[ax] > 1:
            first = np.take(out, [0], axis=ax)
            if np.array_equal(np.broadcast_to(first, out.shape), out):
                out = first
    return out
