"""Propagate stage: TeSA facts from the seeds to every tensor, to a fixpoint.

Entry point: `propagate(annotated, enabled=True, infer_rules=False) -> Propagated`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..annotate import Annotated
from ..tesa import TeSA


@dataclass
class Propagated:
    annotated: Annotated
    tesas: dict[str, TeSA]  # every tensor of the graph (weights, activations, graph inputs/outputs)
    unknown_ops: list[str] = field(default_factory=list)  # "node (op_type)" handled conservatively
    stats: dict = field(default_factory=dict)  # declared vs propagated live shares, MACs
    iterations: int = 0
    log: list[str] = field(default_factory=list)
