"""Transform stage: the execution plan.

Entry point: `transform(propagated, options) -> Plan`. Channel compaction
(compact.py) runs first; for CUDA, the K permutation of unstructured weights
(permute.py); then sparse operator replacement (replace.py), and the fusion of
the LayerNorms the permutation gave a Gather (lngather.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..codegen.registry import KernelSpec, PackedWeight


@dataclass
class NodePlan:
    node: str  # node name in the source model
    op_type: str
    action: str  # "sparse" (custom op) | "dense" (kept) | "compacted" (shrunk, dense)
    weight: str | None = None
    pattern: str = "dense"  # Pattern.short()
    density: float = 1.0  # live share of the weight
    shape: tuple = ()  # effective [K, N]
    kernels: dict[str, KernelSpec] = field(default_factory=dict)  # device -> chosen kernel
    op_key: str | None = None  # the custom op's `kernel` attribute
    fused: list[str] = field(default_factory=list)  # names of nodes folded into the epilogue
    reason: str = ""  # why this action (cost model / measured / not supported ...)
    macs_dense: int = 0  # multiply-adds per row of X (per token) before
    macs_live: int = 0  # ... and after
    forms: dict[str, str] = field(default_factory=dict)  # device -> how its kernel runs the weight (describe())

    def to_dict(self) -> dict:
        return {"node": self.node, "op_type": self.op_type, "action": self.action, "weight": self.weight,
                "pattern": self.pattern, "density": self.density, "shape": list(self.shape),
                "kernels": {d: {**k.to_dict(), **({"form": self.forms[d]} if self.forms.get(d) else {})}
                            for d, k in self.kernels.items()}, "op_key": self.op_key,
                "fused": self.fused, "reason": self.reason, "macs_dense_per_row": self.macs_dense,
                "macs_live_per_row": self.macs_live}


@dataclass
class Plan:
    model: onnx.ModelProto  # the rewritten graph (custom ops in domain ai.sparsify)
    reference: onnx.ModelProto  # the pruned dense model: what the engine must reproduce
    kernels: list[tuple[KernelSpec, PackedWeight]] = field(default_factory=list)  # unique, all devices
    nodes: list[NodePlan] = field(default_factory=list)
    devices: tuple[str, ...] = ("cpu",)
    decided_by: str = "cost model"  # or "measured on <GPU name>"
    compaction: dict = field(default_factory=dict)  # what channel compaction removed
    permutation: dict = field(default_factory=dict)  # K axes reordered for 2:4 groups (permute.py)


def transform(propagated, options=None) -> Plan:
    """Channel compaction (when propagation ran), then sparse operator replacement."""
    from ..graph import index_model, with_input_dims
    from .canonical import own_vectors
    from .replace import TransformOptions, replace_sparse_ops

    options = options or TransformOptions()
    annotated = propagated.annotated
    lo = annotated.loaded
    compaction: dict = {}
    if options.compact and annotated.spec.propagate:
        from .compact import compact
        res = compact(propagated, align=8 if "cuda" in options.devices else 1)
        compaction = {"removed": res.removed, "stats": getattr(res, "stats", {})}
        lo = index_model(res.model)
    lo = own_vectors(lo)
    permutation: dict = {}
    if "cuda" in options.devices and options.permute:
        from ..graph import with_new_values
        from .permute import permute_k
        # (the orders link axes across reshapes: with concrete input dims shape inference resolves the reshapes
        # an exporter writes from the input's own shape; propagation and compaction keep the symbolic dims)
        plo = with_input_dims(lo, options.input_dims) if options.input_dims else lo
        pr = permute_k(plo, annotated.selections, progress=options.progress)
        permutation = {"groups": pr.groups, "log": pr.log, "gathers": pr.gathers}
        if pr.edits:
            lo = with_new_values(lo, pr.model, pr.edits, pr.tensors)
    model, plans, kernels = replace_sparse_ops(lo, annotated.selections, options,
                                               excluded=annotated.excluded_nodes)
    if permutation.get("gathers"):
        from .lngather import fuse_layernorm_gather
        model, fused = fuse_layernorm_gather(model, {r["gather"] for r in permutation["gathers"]}, plo)
        for r in permutation["gathers"]:
            r["fused"] = r["gather"] in fused
    removed = compaction.get("removed") or {}
    for p in plans:
        orig = annotated.loaded.weights.get(p.weight) if p.weight else None
        if orig is not None and orig.ndim == 2 and p.macs_dense:
            p.macs_dense = int(orig.size)  # MACs per row before compaction shrank the weight
        if p.action == "dense" and p.weight in removed:
            p.action = "compacted"
            p.reason = (p.reason + "; " if p.reason else "") + "shrunk by channel compaction"
    return Plan(model=model, reference=annotated.loaded.model, kernels=kernels, nodes=plans,
                devices=tuple(options.devices), decided_by="cost model", compaction=compaction,
                permutation=permutation)
