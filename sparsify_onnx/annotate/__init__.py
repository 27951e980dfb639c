"""Annotate stage: spec -> selected tensors, pruned weights, TeSA seeds.

Entry point: `annotate(loaded, spec) -> Annotated`. Also here: `prune_model(loaded, spec)` (the pruned
dense model), `inspect_model` / `inspect_spec` and their table formatters (for `sparsify-onnx inspect`),
and the sparsifiers (`prune`, `fits`, `describe_zeros`, in sparsifiers.py). Selection semantics:
select.py; pruning geometry per layout: sparsifiers.py.
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
    rule_matches: dict[int, list[str]] = field(default_factory=dict)  # rule index -> tensors it matched
    excluded_tensors: set[str] = field(default_factory=set)  # selected tensors dropped by `exclude`


from .core import annotate, prune_model  # noqa: E402  (needs the dataclasses above)
from .inspect import format_model_table, format_spec_table, inspect_model, inspect_spec  # noqa: E402
from .sparsifiers import describe_zeros, fits, prune  # noqa: E402

__all__ = ["Annotated", "Selection", "annotate", "prune_model", "inspect_model", "inspect_spec",
           "format_model_table", "format_spec_table", "prune", "fits", "describe_zeros"]
