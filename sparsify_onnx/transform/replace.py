"""Sparse operator replacement.

Every MatMul and Gemm whose weight is sparse becomes ``ai.sparsify::SparseLinear``
with a packed weight and a fused epilogue; each decision is recorded in a
`NodePlan` with its reason. A node is replaced when a kernel family supports
the pattern on the target devices and the cost model (or a tuning result) says
the sparse kernel beats the dense product.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..codegen.registry import Epilogue, KernelSpec, PackedWeight, families, get_family
from ..graph import Loaded
from ..pattern import Pattern
from . import NodePlan
from .cost import dense_node_cost
from .fusion import match_epilogue

DOMAIN = "ai.sparsify"
OP_TYPE = "SparseLinear"


@dataclass
class TransformOptions:
    devices: tuple[str, ...] = ("cpu",)  # kernels to build; "cpu" always first
    policy: str = "auto"  # "auto": cost model / tuning decides; "always": every supported sparse weight
    M: int = 1024  # rows of X the decision is made for (batch x sequence)
    cuda_arch: tuple[str, ...] = ("sm_80", "sm_90")
    cpu_arch: str = "native"
    compact: bool = True  # channel compaction before replacement
    permute: bool = True  # (CUDA) reorder the K axis of unstructured weights into 2:4 groups where that is free
    progress: object = None  # callable(str) for long steps
    tuned: dict = field(default_factory=dict)  # op-independent: (device, family, tables_hash) -> tile
    measured: dict = field(default_factory=dict)  # node name -> (sparse seconds, dense seconds) timed on the GPU
    gpu_name: str = ""
    explain: bool = False
    input_dims: dict | None = None  # concrete graph-input dims for the graph analysis (graph.with_input_dims)


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype == np.float32:
        return "fp32"
    if arr.dtype == np.float16:
        return "fp16"
    return str(arr.dtype)


def kernel_pattern(stored: Pattern | None, transposed: bool) -> Pattern:
    """The pattern in the [K, N] layout the kernel computes with."""
    if stored is None:
        return Pattern("unstructured")
    if stored.kind == "block" and transposed:
        return Pattern("block", block=(stored.block[1], stored.block[0]))
    if stored.kind in ("channel", "dense"):
        return Pattern("unstructured")
    return stored


def _effective_weight(lo: Loaded, node: onnx.NodeProto):
    """(X name, W_eff [K, N], stored-layout transposed?, bias from Gemm C, reason-if-not)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "MatMul":
        w = lo.weights.get(node.input[1])
        if w is None:
            return None, "input 1 is not a constant weight"
        if w.ndim != 2:
            return None, f"weight has rank {w.ndim}, not 2"
        return (node.input[0], w, False, None), None
    if node.op_type == "Gemm":
        w = lo.weights.get(node.input[1])
        if w is None:
            return None, "input B is not a constant weight"
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        transB = int(attrs.get("transB", 0))
        W = (w.T if transB else w) * np.asarray(alpha, dtype=w.dtype)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = lo.weights.get(node.input[2])
            N = W.shape[1]
            if c is None or c.size not in (1, N) or (c.ndim == 2 and c.shape[0] != 1):
                return None, "Gemm C is not a constant [N] (or scalar) bias"
            bias = (np.broadcast_to(c.reshape(-1), (N,)) * np.asarray(beta, dtype=c.dtype)).astype(w.dtype)
        return (node.input[0], np.ascontiguousarray(W), bool(transB), bias), None
    return None, f"{node.op_type} is not a linear op"


def replace_sparse_ops(lo: Loaded, selections: dict, options: TransformOptions, *,
                       excluded: set[str] = frozenset(), live_masks: dict | None = None,
                       progress=None):
    """Rewrite ``lo.model``. Returns (model, node_plans, kernels)."""
    model = copy.deepcopy(lo.model)
    g = model.graph
    plans: list[NodePlan] = []
    kernels: dict[str, tuple[KernelSpec, PackedWeight]] = {}
    remove_ids: set[str] = set()
    new_nodes: dict[int, list[onnx.NodeProto]] = {}  # position -> replacement nodes
    new_inits: list[onnx.TensorProto] = []
    position = {_key(n): i for i, n in enumerate(lo.graph.node)}
    dropped_weights: set[str] = set()
    fused_away: set[str] = set()
    model_nodes = list(lo.graph.node)

    candidates = [n for n in model_nodes if n.op_type in ("MatMul", "Gemm") and n.domain in ("", "ai.onnx")]
    for idx, node in enumerate(candidates):
        name = lo.node_name(node)
        if _key(node) in fused_away:
            continue
        if progress:
            progress(idx + 1, len(candidates), name)
        plan = NodePlan(node=name, op_type=node.op_type, action="dense")
        plans.append(plan)
        wname = node.input[1] if len(node.input) > 1 else None
        plan.weight = wname
        if name in excluded:
            plan.reason = "excluded by the spec"
            continue
        eff, why = _effective_weight(lo, node)
        if eff is None:
            plan.reason = why
            continue
        xname, W, transposed, gemm_bias = eff
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        K, N = W.shape
        plan.shape = (K, N)
        plan.macs_dense = K * N
        sel = selections.get(wname)
        plan.pattern = sel.pattern.short() if sel else "dense"
        nz = int(np.count_nonzero(W))
        density = nz / W.size
        plan.density = density
        plan.macs_live = nz
        if sel is None and density > 0.5:
            plan.reason = "weight not selected by the spec and mostly non-zero"
            continue
        if density == 0.0:
            plan.reason = "weight is all zero (left to onnxruntime; propagation removes its consumers)"
            continue
        dtype = _dtype_name(W)
        kpat = kernel_pattern(sel.pattern if sel else None, transposed)
        pre_nodes = []
        if node.op_type == "Gemm" and int(attrs.get("transA", 0)):
            xt = f"{xname}.T.{len(new_nodes)}"
            pre_nodes.append(helper.make_node("Transpose", [xname], [xt], name=f"{name}/TransposeA", perm=[1, 0]))
            xname = xt
        if options.policy == "never":
            plan.reason = "sparse replacement disabled"
            continue
        # epilogue
        ep = match_epilogue(lo, node.output[0], N)
        bias = gemm_bias
        if ep.bias is not None:
            bias = ep.bias.astype(W.dtype) if bias is None else (bias + ep.bias).astype(W.dtype)
        epilogue = Epilogue(bias=bias is not None, activation=ep.activation, residual=ep.residual is not None)
        # pack once, shared by every device
        from ..codegen.packing import pack
        try:
            packed = pack(W, kpat, dtype=W.dtype)
        except ValueError as e:
            plan.reason = f"cannot pack as {kpat.short()}: {e}"
            continue
        chosen: dict[str, KernelSpec] = {}
        reasons = []
        th = packed.tables_hash()
        for dev in options.devices:
            best = None
            usable = []
            for fam in families(dev):
                why_not = fam.supports(kpat, K, N, dtype)
                if why_not:
                    reasons.append(why_not)
                else:
                    usable.append(fam)
            # a family the tuner measured for this weight on this device wins over the cost model's choice
            tuned = [f for f in usable if (dev, f.name, th) in options.tuned]
            for fam in tuned or usable:
                tile = options.tuned.get((dev, fam.name, th)) or fam.default_tile(kpat, K, N, dtype, options.M)
                spec = KernelSpec(op="linear", family=fam.name, device=dev, dtype=dtype, pattern=kpat, K=K, N=N,
                                  epilogue=epilogue, tile=tuple(tile),
                                  arch=options.cuda_arch if dev == "cuda" else (options.cpu_arch,),
                                  tables_hash=th)
                try:
                    c = fam.cost(spec, packed, options.M)
                except NotImplementedError:
                    c = float("inf")
                if best is None or c < best[0]:
                    best = (c, spec)
            if best is not None:
                chosen[dev] = best[1]
        primary = options.devices[-1] if "cuda" in options.devices else "cpu"
        if primary not in chosen:
            plan.reason = "no kernel family for this pattern on " + primary + (
                f" ({'; '.join(sorted(set(reasons)))})" if reasons else "")
            continue
        if name in options.measured:
            c_sparse, c_dense = options.measured[name]
            how = f"measured on {options.gpu_name or 'the GPU'}"
        else:
            c_sparse = get_cost(chosen[primary], packed, options.M)
            c_dense = dense_node_cost(primary, options.M, K, N, dtype, chosen[primary].epilogue)
            how = "cost model"
        if options.policy == "auto" and not (c_sparse < c_dense):
            plan.reason = (f"{how}: sparse {c_sparse * 1e6:.1f} us >= dense {c_dense * 1e6:.1f} us "
                           f"at M={options.M}, density {density:.2f}")
            continue
        # ---- rewrite
        op_key = chosen[primary].op_key()
        values_name = f"{wname}.sparse.{kpat.short()}.{packed.tables_hash()[:8]}"
        if not any(t.name == values_name for t in new_inits):
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(packed.values), values_name))
        inputs = [xname, values_name]
        if bias is not None:
            bname = f"{name}.bias".replace("/", "_").lstrip("_")
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(bias), bname))
            inputs.append(bname)
        else:
            inputs.append("")
        inputs.append(ep.residual or "")
        while inputs and inputs[-1] == "":
            inputs.pop()
        new = helper.make_node(OP_TYPE, inputs, [ep.output], name=name, domain=DOMAIN, kernel=op_key)
        # at the place of the last absorbed node: every input (the residual too) exists there
        new_nodes[max(position[_key(n)] for n in [node, *ep.nodes])] = pre_nodes + [new]
        remove_ids.add(_key(node))
        for n in ep.nodes:
            remove_ids.add(_key(n))
            fused_away.add(_key(n))
        plan.fused = [lo.node_name(n) for n in ep.nodes]
        plan.action = "sparse"
        plan.pattern = kpat.short()
        plan.kernels = chosen
        plan.forms = {d: f for d, s in chosen.items() if (f := get_family(s.family).describe(s, packed))}
        plan.op_key = op_key
        plan.reason = (f"{chosen[primary].family}: {how} {c_sparse * 1e6:.1f} us vs dense "
                       f"{c_dense * 1e6:.1f} us at M={options.M}" if options.policy == "auto"
                       else f"{chosen[primary].family} (policy: always)")
        for dev, spec in chosen.items():
            kernels.setdefault(spec.procedural_name(), (spec, packed))
        dropped_weights.add(wname)

    # assemble the graph in the original order
    out_nodes = []
    for i, n in enumerate(g.node):
        orig = lo.graph.node[i]
        if i in new_nodes:
            out_nodes.extend(new_nodes[i])
        elif _key(orig) in remove_ids:
            continue
        else:
            out_nodes.append(n)
    del g.node[:]
    g.node.extend(eliminate_dead_nodes(out_nodes, {o.name for o in g.output}))
    still_used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in still_used]
    del g.initializer[:]
    g.initializer.extend(keep)
    g.initializer.extend(new_inits)
    if plans and any(p.action == "sparse" for p in plans):
        if not any(o.domain == DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    # value_info of removed intermediates would be stale; drop those no longer produced
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
    vi = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vi)
    return model, plans, list(kernels.values())


def _key(node: onnx.NodeProto) -> str:
    """Stable identity of a node: its first output (unique in a valid graph)."""
    return node.output[0]


def eliminate_dead_nodes(nodes: list, graph_outputs: set[str]) -> list:
    """Drop nodes none of whose outputs is consumed (e.g. the constants of a fused GELU)."""
    nodes = list(nodes)
    while True:
        used = {i for n in nodes for i in n.input} | graph_outputs
        keep = [n for n in nodes if any(o in used for o in n.output if o)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep


def get_cost(spec: KernelSpec, packed: PackedWeight, M: int) -> float:
    from ..codegen.registry import get_family
    try:
        return get_family(spec.family).cost(spec, packed, M)
    except NotImplementedError:
        return float("inf")
