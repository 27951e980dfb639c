"""Annotate stage: spec -> selected tensors, pruned weights, TeSA seeds.

Entry point: `annotate(loaded, spec) -> Annotated`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Loaded
from ..pattern import Pattern
from ..spec import Rule, Spec
from ..tesa import TeSA


@dataclass
class Selection:
    """The rule that won for one tensor (a later rule wins) and what it did."""
    tensor: str
    rule: Rule
    consumers: list[tuple[str, int]]  # (node name, input index) through which it was selected
    pattern: Pattern  # in the tensor's stored layout
    reduction_axis: int | None  # axis the n:m groups / tile rows run along (None: not a weight)
    density_before: float  # share of non-zeros in the source model
    density_after: float  # share of non-zeros after pruning
    pruned: bool  # True when the rule had `sparsity` and the weight was pruned
    dynamic: bool = False


@dataclass
class Annotated:
    source: Loaded  # the model as read
    loaded: Loaded  # the pruned model, re-indexed (weights replaced by their pruned values)
    spec: Spec
    selections: dict[str, Selection] = field(default_factory=dict)  # tensor name -> selection
    tesas: dict[str, TeSA] = field(default_factory=dict)  # seeds: one per selected tensor
    excluded_nodes: set[str] = field(default_factory=set)  # node names matched by `exclude`
