"""Tuning a whole plan: every CUDA kernel's tile chosen by timing on the target GPU.

`tune_plan(plan, M, progress=None) -> Plan` returns a new Plan whose CUDA KernelSpecs carry the
measured-fastest tile (the op_key, and so the rewritten graph, does not change: tiles are not part of
the computation's identity). Without a GPU every kernel keeps its cost-model tile, and the plan says so.
"""
from __future__ import annotations

import dataclasses

import os
from concurrent.futures import ThreadPoolExecutor

from ..transform import Plan
from ..transform.cost import epilogue_seconds
from . import build_candidates, candidates, tune
from .build import nvcc_path
from .dense import dense_seconds

CANDIDATES_PER_KERNEL = 6
OTHER_FAMILY_CANDIDATES = 2


def _prebuild(cand_lists: list, progress=None) -> None:
    """Compile every kernel's candidate library in parallel (nvcc processes); tune() then hits the cache."""
    if progress:
        progress(f"compiling tile candidates of {len(cand_lists)} CUDA kernels in parallel")
    with ThreadPoolExecutor(max_workers=max(1, min(len(cand_lists), os.cpu_count() or 1))) as ex:
        list(ex.map(build_candidates, cand_lists))


def tune_plan(plan: Plan, M: int, progress=None, gpu=None) -> tuple[Plan, list[dict]]:
    results: list[dict] = []
    new_kernels = []
    swap: dict[str, object] = {}  # old procedural name -> tuned spec
    cuda = [(s, p) for s, p in plan.kernels if s.device == "cuda"]
    if gpu is None:
        from .device import open_device
        gpu = open_device() or False
    # with a GPU to time on, other families' variants compete too (the measurement picks the family)
    others = OTHER_FAMILY_CANDIDATES if (gpu is not False and nvcc_path()) else 0
    cap = getattr(gpu, "capability", None) if gpu is not False else None  # Hopper-only families: on Hopper only
    cands = {s.procedural_name(): candidates(s, p, limit=CANDIDATES_PER_KERNEL, others=others, M=M, capability=cap)
             for s, p in cuda}
    dense: dict = {}
    if gpu is not False and nvcc_path():
        _prebuild(list(cands.values()), progress)
    for i, (spec, packed) in enumerate(plan.kernels):
        if spec.device != "cuda":
            new_kernels.append((spec, packed))
            continue
        if progress and gpu is not False:
            progress(f"tuning {len(swap) + 1}/{len(cuda)}: {spec.family} K={spec.K} N={spec.N}")
        choice = tune(cands[spec.procedural_name()], M, gpu=gpu)
        swap[spec.procedural_name()] = choice.spec
        new_kernels.append((choice.spec, packed))
        res = {"op_key": spec.op_key(), **choice.to_dict()}
        if choice.measured:  # the dense alternative, timed the same way
            shape = (spec.K, spec.N, spec.dtype)
            if shape not in dense:
                dense[shape] = dense_seconds(gpu, M, *shape)
            res["dense_seconds"] = dense[shape]
        results.append(res)
    nodes = []
    for n in plan.nodes:
        k = dict(n.kernels)
        if "cuda" in k and k["cuda"].procedural_name() in swap:
            k["cuda"] = swap[k["cuda"].procedural_name()]
        nodes.append(dataclasses.replace(n, kernels=k))
    measured = [r for r in results if r["measured"]]
    decided = plan.decided_by
    if measured:
        decided = f"{plan.decided_by}; CUDA tiles {measured[0]['reason'].split(' (')[0]}"
    elif results:
        decided = f"{plan.decided_by}; CUDA tiles from the cost model (nothing timed: no GPU here)"
    # unique kernels again (two nodes may now share a tuned spec)
    seen, uniq = set(), []
    for s, p in new_kernels:
        if s.procedural_name() not in seen:
            seen.add(s.procedural_name())
            uniq.append((s, p))
    return dataclasses.replace(plan, kernels=uniq, nodes=nodes, decided_by=decided), results


def measured_decisions(plan: Plan, results: list[dict], M: int) -> tuple[dict, dict]:
    """From a tuned plan: ({node: (sparse_s, dense_s)}, {(device, family, tables_hash): tile}).

    Only nodes whose CUDA kernel and dense GEMM were both timed get a measured decision. The dense side
    is the timed cuBLAS GEMM plus the element-wise passes our kernel fuses (transform.cost.epilogue_seconds)."""
    by_key = {r["op_key"]: r for r in results}
    measured, tiles = {}, {}
    for n in plan.nodes:
        spec = n.kernels.get("cuda")
        if spec is None:
            continue
        r = by_key.get(spec.op_key())
        if not r:
            continue
        tiles[("cuda", spec.family, spec.tables_hash)] = tuple(r["tile"])
        if r.get("measured") and r.get("dense_seconds"):
            measured[n.node] = (r["seconds"], r["dense_seconds"]
                                + epilogue_seconds(M, spec.N, spec.dtype, spec.epilogue))
    return measured, tiles
