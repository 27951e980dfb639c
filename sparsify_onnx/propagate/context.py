"""RuleContext: what a propagation rule sees, and the only way it writes facts."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .masks import fit, to_rank


def _attr_value(a: onnx.AttributeProto):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


class RuleContext:
    """The view of one node for a rule.

    Reading: ``nonzero(i)``, ``used(i)``, ``live(i)`` for inputs, ``out_nonzero(i)``,
    ``out_used(i)``, ``out_live(i)`` for outputs (compact boolean masks whose rank is the
    tensor's rank; size-1 axes broadcast), ``in_shape(i)``/``out_shape(i)`` (dims: int or
    symbol, None when unknown), ``mshape_in(i)``/``mshape_out(i)`` (mask shapes),
    ``const(i)`` (the constant value of an input: initializer, Constant or folded shape
    computation), ``sym(i)`` (symbolic shape value as an array of Mono), ``attrs``, ``opset``.

    Writing: ``narrow_output(i, nonzero=mask)`` and ``narrow_input(i, used=mask)``.
    Masks may be compact; they are broadcast (or reduced with any, conservatively) to
    the tensor's mask shape.
    """

    def __init__(self, engine, index: int, node: onnx.NodeProto, rule_name: str, opset: int):
        self._e = engine
        self.index = index
        self.node = node
        self.op_type = node.op_type
        self.domain = node.domain
        self.opset = opset
        self.rule_name = rule_name
        self.node_name = engine.node_names[index]
        self.attrs = {a.name: _attr_value(a) for a in node.attribute}
        self.changed: set[str] = set()

    # ---- structure -------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    @property
    def n_outputs(self) -> int:
        return len(self.node.output)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def has_output(self, i: int) -> bool:
        return i < len(self.node.output) and bool(self.node.output[i])

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def in_shape(self, i: int):
        return self._e.shape_of(self.node.input[i]) if self.has_input(i) else None

    def out_shape(self, i: int):
        return self._e.shape_of(self.node.output[i]) if self.has_output(i) else None

    def in_rank(self, i: int) -> int | None:
        s = self.in_shape(i)
        return None if s is None else len(s)

    def out_rank(self, i: int) -> int | None:
        s = self.out_shape(i)
        return None if s is None else len(s)

    def mshape_in(self, i: int) -> tuple:
        return self._e.tesas[self.node.input[i]].mask_shape

    def mshape_out(self, i: int) -> tuple:
        return self._e.tesas[self.node.output[i]].mask_shape

    def const(self, i: int):
        return self._e.consts.get(self.node.input[i]) if self.has_input(i) else None

    def sym(self, i: int):
        return self._e.symbolic_value(self.node.input[i]) if self.has_input(i) else None

    def dtype_in(self, i: int) -> int:
        return self._e.loaded.dtypes.get(self.node.input[i], 0) if self.has_input(i) else 0

    # ---- reading masks -------------------------------------------------------
    def _mask(self, name: str, which: str) -> np.ndarray:
        t = self._e.tesas[name]
        r = len(t.mask_shape)
        if which == "live":  # compact: numpy broadcasting keeps size-1 axes where both masks have them
            return to_rank(t.nonzero, r) & to_rank(t.used, r)
        return to_rank(t.nonzero if which == "nonzero" else t.used, r)

    def nonzero(self, i: int) -> np.ndarray:
        return self._mask(self.node.input[i], "nonzero")

    def used(self, i: int) -> np.ndarray:
        return self._mask(self.node.input[i], "used")

    def live(self, i: int) -> np.ndarray:
        return self._mask(self.node.input[i], "live")

    def out_nonzero(self, i: int) -> np.ndarray:
        return self._mask(self.node.output[i], "nonzero")

    def out_used(self, i: int) -> np.ndarray:
        return self._mask(self.node.output[i], "used")

    def out_live(self, i: int) -> np.ndarray:
        return self._mask(self.node.output[i], "live")

    # ---- writing facts -------------------------------------------------------
    def narrow_output(self, i: int, *, nonzero) -> bool:
        """Output i may be non-zero only where ``nonzero`` is True."""
        if not self.has_output(i) or nonzero is None:
            return False
        name = self.node.output[i]
        m = fit(nonzero, self._e.tesas[name].mask_shape)
        if m is None:
            return False
        if self._e.narrow_nonzero(name, m, by=f"{self.rule_name}@{self.node_name}"):
            self.changed.add(name)
            return True
        return False

    def narrow_input(self, i: int, *, used) -> bool:
        """Input i influences this node's used outputs only where ``used`` is True."""
        if not self.has_input(i) or used is None:
            return False
        name = self.node.input[i]
        m = fit(used, self._e.tesas[name].mask_shape)
        if m is None:
            return False
        if self._e.narrow_used(name, (self.index, i), m, by=f"{self.rule_name}@{self.node_name}"):
            self.changed.add(name)
            return True
        return False

    def log(self, msg: str) -> None:
        self._e.log.append(f"{self.node_name}: {msg}")
