"""The YAML sparsity spec (user contract, DESIGN.md "The spec").

`load_spec(path)` reads the file with a safe loader and validates it field by
field; every error is a SparsifyError carrying the file's line number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .pattern import Pattern


@dataclass(frozen=True)
class Selector:
    tensor: str | None = None  # glob over tensor names
    node: str | None = None  # glob over node names
    op: str | None = None  # op_type filter
    input: int | None = None  # input index; default: weight input of MatMul/Gemm/Conv

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("tensor", self.tensor), ("node", self.node), ("op", self.op),
                                           ("input", self.input)) if v is not None]
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based position in `rules`
    line: int  # line of the rule in the YAML file
    select: Selector
    pattern: Pattern
    sparsity: float | None = None  # fraction of zeros to prune to; None keeps existing zeros
    method: str = "magnitude"  # magnitude | random
    dynamic: bool = False
    seed: int = 0

    def where(self, path: str | Path | None) -> str:
        return f"{path}:{self.line} (rule {self.index})" if path else f"rule {self.index} (line {self.line})"


@dataclass
class Spec:
    version: int = 1
    rules: list[Rule] = field(default_factory=list)
    exclude: list[Selector] = field(default_factory=list)
    propagate: bool = True
    path: Path | None = None
    sha256: str | None = None
    text: str = ""
