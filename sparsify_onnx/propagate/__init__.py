"""Propagate stage: TeSA facts from the seeds to every tensor, to a fixpoint.

Entry point: `propagate(annotated, enabled=True, infer_rules=False) -> Propagated`.
Rules live in `propagate/rules/` (one module per op family) and are registered in
`propagate.registry` (`rule`, `register_rule` for users' own ops).
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
    enabled: bool = True
    time_s: float = 0.0

    def live(self, name: str):
        """The live mask of a tensor broadcast to its mask shape."""
        return self.tesas[name].live


def propagate(annotated: Annotated, *, enabled: bool = True, infer_rules: bool = False) -> Propagated:
    """Run TeSA propagation to a fixpoint (see propagate/engine.py)."""
    import time

    from .engine import Engine
    from .stats import compute_stats, snapshot

    t0 = time.perf_counter()
    eng = Engine(annotated, infer_rules=infer_rules)
    initial = snapshot(eng.tesas)
    eng.run(enabled=enabled)
    elapsed = time.perf_counter() - t0
    stats = compute_stats(eng, initial, elapsed)
    return Propagated(annotated=annotated, tesas=eng.tesas, unknown_ops=list(eng.unknown_ops), stats=stats,
                      iterations=eng.iterations, log=eng.log, enabled=enabled, time_s=elapsed)


from .registry import register_rule, rule  # noqa: E402

__all__ = ["Propagated", "propagate", "register_rule", "rule"]
