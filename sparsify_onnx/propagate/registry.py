"""Propagation rule registry, keyed by (domain, op_type), opset aware.

A rule is a function ``f(ctx: RuleContext) -> None`` that reads the TeSAs of
its node's inputs and outputs through the context and writes new facts ONLY
through ``ctx.narrow_output(i, nonzero=...)`` and ``ctx.narrow_input(i, used=...)``.
Rules never touch TeSA objects directly: the engine owns them (a tensor with
several consumers is used where ANY consumer uses it, so the engine combines
the per-consumer facts).

    @rule("Relu", "Gelu")
    @rule("Gelu", "FastGelu", domain="com.microsoft")
    def zero_preserving_unary(ctx): ...

Users register rules for their own ops with :func:`register_rule`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

RuleFn = Callable[..., None]  # f(ctx: propagate.context.RuleContext) -> None

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class RuleEntry:
    domain: str
    op_type: str
    since_opset: int
    fn: RuleFn

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "rule")


_REGISTRY: dict[tuple[str, str], list[RuleEntry]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in _DEFAULT_DOMAINS else domain


def register_rule(op_type: str, fn: RuleFn, *, domain: str = "", since_opset: int = 1,
                  replace: bool = True) -> RuleFn:
    """Register ``fn`` for (domain, op_type) from opset ``since_opset`` on.

    A later registration with the same (domain, op_type, since_opset) replaces
    the earlier one (``replace=True``), so users can override built-in rules.
    """
    key = (_norm_domain(domain), op_type)
    entries = _REGISTRY.setdefault(key, [])
    if replace:
        entries[:] = [e for e in entries if e.since_opset != since_opset]
    entries.append(RuleEntry(key[0], op_type, since_opset, fn))
    entries.sort(key=lambda e: e.since_opset)
    return fn


def rule(*op_types: str, domain: str = "", since_opset: int = 1):
    """Decorator: register the function for each op type (stackable)."""
    def deco(fn: RuleFn) -> RuleFn:
        for op in op_types:
            register_rule(op, fn, domain=domain, since_opset=since_opset)
        return fn
    return deco


def unregister_rule(op_type: str, *, domain: str = "") -> None:
    _REGISTRY.pop((_norm_domain(domain), op_type), None)


def lookup(op_type: str, domain: str = "", opset: int | None = None) -> RuleEntry | None:
    """The rule with the highest since_opset <= opset (any, when opset is unknown)."""
    _ensure_builtin()
    entries = _REGISTRY.get((_norm_domain(domain), op_type))
    if not entries:
        return None
    if opset is None or opset <= 0:
        return entries[-1]
    best = None
    for e in entries:
        if e.since_opset <= opset:
            best = e
    return best


def registered_ops() -> list[tuple[str, str, int]]:
    """(domain, op_type, since_opset) for every registered rule, sorted."""
    _ensure_builtin()
    return sorted((e.domain, e.op_type, e.since_opset) for v in _REGISTRY.values() for e in v)


_LOADED = False


def _ensure_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from .rules import conv, elementwise, matmul, norm, reduce, shape  # noqa: F401 (registers)
