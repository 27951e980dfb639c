"""The convert pipeline, stage after stage (DESIGN.md "The pipeline").

load -> annotate -> propagate -> transform -> codegen -> build -> package -> verify -> report
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SparsifyError


@dataclass
class ConvertOptions:
    device: str = "auto"  # cpu | cuda | auto
    verify: bool = True
    bench: bool = True  # a short latency measurement for the report
    cuda_graph: bool = False  # (CUDA) time the report's latency under onnxruntime's CUDA graphs
    input_shapes: dict = field(default_factory=dict)  # name -> tuple of ints
    policy: str = "auto"  # auto | always | never
    infer_rules: bool = False
    cuda_arch: tuple = ("sm_80", "sm_90")
    cpu_arch: str = "native"
    threads: int = 0  # onnxruntime intra-op threads for verify/bench (0 = default)
    tune: bool = True  # time CUDA tile candidates on the GPU when one is present
    reorder: bool = True  # (CUDA) reorder K of unstructured weights into 2:4 groups where free (transform/permute.py)
    seed: int = 0
    force: bool = True
    quiet: bool = False


class Progress:
    def __init__(self, quiet: bool = False, total: int = 9):
        self.quiet, self.total, self.step, self.t0 = quiet, total, 0, time.perf_counter()

    def stage(self, name: str, msg: str = ""):
        self.step += 1
        self.say(f"[{self.step}/{self.total}] {name}" + (f": {msg}" if msg else ""))

    def say(self, msg: str):
        if not self.quiet:
            print(f"  {time.perf_counter() - self.t0:6.1f}s  {msg}", file=sys.stderr, flush=True)


def gpu_present() -> bool:
    try:
        import onnxruntime as ort
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return False
    except Exception:
        return False
    return shutil.which("nvidia-smi") is not None


def resolve_devices(device: str, progress: Progress) -> tuple[str, ...]:
    nvcc = shutil.which("nvcc")
    if device == "cpu":
        return ("cpu",)
    if device == "cuda":
        if not nvcc:
            raise SparsifyError("--device cuda needs nvcc (the CUDA compiler) on PATH, and none was found",
                                hint="install the CUDA toolkit, or convert with --device cpu")
        return ("cpu", "cuda")
    if device != "auto":
        raise SparsifyError(f"unknown --device {device!r}", hint="use cpu, cuda or auto")
    if nvcc and gpu_present():
        return ("cpu", "cuda")
    progress.say("notice: no GPU with onnxruntime-gpu" + ("" if nvcc else " and no nvcc")
                 + " found; building CPU kernels only (--device cuda builds CUDA kernels anyway)")
    return ("cpu",)


def rows_of(input_shapes: dict, feeds: dict) -> int:
    """M for the cost model: the product of the leading dims of the first graph input."""
    for v in feeds.values():
        a = np.asarray(v)
        if a.ndim >= 2:
            return int(np.prod(a.shape[:2]))
        if a.ndim == 1:
            return int(a.shape[0])
    return 1024


def convert(model_path, spec_path, out_dir, options: ConvertOptions | None = None) -> dict:
    """Run the whole pipeline. Returns the report dict. Raises SparsifyError on user errors."""
    from .annotate import annotate
    from .bench.latency import make_inputs
    from .codegen import generate
    from .custom_ops.build import build_library
    from .engine import compare_outputs, raise_if_failed, staging_dir, write_manifest
    from .engine.verify import TOLERANCE, exact_providers
    from .graph import has_symbolic_inputs, load_model, save_model
    from .propagate import propagate
    from .spec import load_spec
    from .transform import transform
    from .transform.replace import TransformOptions

    opt = options or ConvertOptions()
    pr = Progress(opt.quiet)
    out_dir = Path(out_dir)

    pr.stage("load", str(model_path))
    loaded = load_model(model_path)
    spec = load_spec(spec_path)
    pr.say(f"{len(loaded.graph.node)} nodes, {len(loaded.weights)} weights; spec: {len(spec.rules)} rules")
    feeds = make_inputs(loaded.model, opt.input_shapes, seed=opt.seed)

    pr.stage("annotate")
    annotated = annotate(loaded, spec)
    pr.say(f"{len(annotated.selections)} tensors selected")

    pr.stage("propagate", "on" if spec.propagate else "off (spec says propagate: false)")
    t = time.perf_counter()
    propagated = propagate(annotated, enabled=spec.propagate, infer_rules=opt.infer_rules)
    pr.say(f"fixpoint in {time.perf_counter() - t:.2f}s"
           + (f"; no rule for {len(propagated.unknown_ops)} nodes (handled conservatively)"
              if propagated.unknown_ops else ""))

    devices = resolve_devices(opt.device, pr)
    if opt.cuda_graph and opt.bench and not ("cuda" in devices and gpu_present()):
        raise SparsifyError("--cuda-graph times the engine on the CUDA execution provider: it needs --device cuda "
                            "(or auto) on a host with a GPU and onnxruntime-gpu",
                            hint="run the conversion on the GPU host, or drop --cuda-graph")
    M = rows_of(opt.input_shapes, feeds)

    pr.stage("transform", f"devices {', '.join(devices)}, decisions for M={M} rows")
    topts = TransformOptions(devices=devices, policy=opt.policy, M=M, cuda_arch=tuple(opt.cuda_arch),
                             cpu_arch=opt.cpu_arch, compact=spec.propagate, progress=pr.say,
                             permute=opt.reorder, input_dims={k: v.shape for k, v in feeds.items()}
                             if has_symbolic_inputs(loaded.model) else None)
    plan = transform(propagated, topts)
    n_sparse = sum(p.action == "sparse" for p in plan.nodes)
    from .transform.permute import describe
    for grp in plan.permutation.get("groups", []):
        pr.say(f"K reordered into 2:4 groups: {describe(grp)}")
    ln = [r["node"] for r in plan.permutation.get("gathers", []) if r.get("fused")]
    if ln:
        pr.say(f"{len(ln)} LayerNorms write their rows in their consumers' K order (ai.sparsify::LayerNormGather)")
    pr.say(f"{n_sparse} sparse ops, {sum(p.action == 'compacted' for p in plan.nodes)} compacted, "
           f"{sum(p.action == 'dense' for p in plan.nodes)} kept dense")

    tuning: list = []
    if "cuda" in devices and any(r.pattern.kind == "nm" for r in spec.rules):
        from .codegen.cuda.nm import use_cusparselt
        lt = use_cusparselt()
        pr.say(f"n:m on CUDA through cuSPARSELt: {lt}" if lt else
               "warning: libcusparseLt not found here (pip install nvidia-cusparselt-cu13, or set "
               "SPARSIFY_CUSPARSELT_LIB): the n:m CUDA kernels run their FMA fallback on hosts without it")
    if "cuda" in devices and opt.tune:
        from .tune.plan import measured_decisions, tune_plan
        if opt.policy == "auto" and gpu_present():
            # every candidate node gets a CUDA kernel, timed against cuBLAS; then the plan is made again
            # with the measured decisions (DESIGN: measured latency decides when a GPU is present)
            trial = transform(propagated, dataclasses.replace(topts, policy="always"))
            trial, tuning = tune_plan(trial, M, progress=pr.say)
            measured, tiles = measured_decisions(trial, tuning, M)
            if measured:
                gpu_name = next((r["reason"].split("measured on ")[1].split(" (")[0] for r in tuning
                                 if r.get("measured")), "the GPU")
                plan = transform(propagated, dataclasses.replace(topts, measured=measured, tuned=tiles,
                                                                 gpu_name=gpu_name))
                plan.decided_by = f"measured on {gpu_name} (sparse kernel vs cuBLAS, same events)"
            else:
                plan, tuning = tune_plan(plan, M, progress=pr.say)
        elif any(k.device == "cuda" for k, _ in plan.kernels):
            plan, tuning = tune_plan(plan, M, progress=pr.say, gpu=None if gpu_present() else False)
        n_sparse = sum(p.action == "sparse" for p in plan.nodes)
        pr.say(f"{plan.decided_by}: {n_sparse} sparse ops")
    # the sparse nodes' kernel times on the GPU as tuning measured them (CUDA events), for the report: onnxruntime's
    # profiler gives only each node's CPU-side launch time on the CUDA provider
    gpu_times: dict = {}
    if tuning:
        from .tune.plan import measured_decisions
        gpu_times = measured_decisions(plan, tuning, M)[0]

    pr.stage("codegen", f"{len(plan.kernels)} kernels")
    sources = generate(plan.kernels)

    report: dict = {}
    with staging_dir(out_dir, force=opt.force) as stage:
        pr.stage("build", "libsparsify_ops.so")
        build = build_library(sources, stage, cuda=("cuda" in devices), cuda_arch=tuple(opt.cuda_arch),
                              cpu_arch=opt.cpu_arch, progress=lambda msg: pr.say(msg))
        if getattr(build, "notice", None):
            pr.say(build.notice)
        lib = Path(build.path)
        if lib.parent.resolve() != stage.resolve():
            shutil.copy2(lib, stage / "libsparsify_ops.so")

        pr.stage("package", str(out_dir))
        save_model(plan.model, stage / "model.onnx")

        verification = None
        latency = None
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if (
            "cuda" in devices and gpu_present()) else ["CPUExecutionProvider"]
        dtype = model_dtype(plan.reference)
        not_here = runs_nowhere_here(plan.kernels, providers, dtype, out_dir, fp16_layernorms=sum(
            n.op_type == "LayerNormGather" for n in plan.model.graph.node) if dtype == "fp16" else 0)
        if not_here:  # e.g. an fp16 engine for CUDA built on a host without a GPU: nothing here can run it
            pr.say(not_here)
            opt = dataclasses.replace(opt, verify=False, bench=False)
        if opt.verify:
            pr.stage("verify", f"engine vs pruned dense model, tolerance {TOLERANCE[dtype]:g}")
            sess, ref_sess = _sessions(stage, plan.reference, exact_providers(providers, dtype), opt.threads)
            names = [o.name for o in ref_sess.get_outputs()]
            ref = dict(zip(names, ref_sess.run(names, feeds)))
            got = dict(zip(names, sess.run(names, feeds)))
            v = compare_outputs(got, ref, TOLERANCE[dtype])
            v.shapes = {k: np.asarray(x).shape for k, x in feeds.items()}
            verification = v.to_dict()
            worst = max((o.get("max_rel", float("inf")) for o in v.outputs.values()), default=0.0)
            pr.say(f"max relative error {worst:.3g} " + ("(ok)" if v.passed else "(FAILED)"))
            raise_if_failed(v)
            del sess, ref_sess
        else:
            pr.stage("verify", "skipped (" + ("no GPU here" if not_here else "--no-verify") + ")")
        if opt.bench:
            from .bench.latency import CUDA_GRAPH_PROVIDERS, compare
            pr.stage("report", "timing engine vs pruned dense model in onnxruntime"
                     + (" under CUDA graphs" if opt.cuda_graph else ""))
            # (--cuda-graph was checked above: a CUDA engine on a GPU host)
            if opt.cuda_graph:
                sess, ref_sess, refused = _sessions(stage, plan.reference, list(CUDA_GRAPH_PROVIDERS), opt.threads,
                                                    fallback=providers)
            else:
                (sess, ref_sess), refused = _sessions(stage, plan.reference, providers, opt.threads), None
            if refused:
                pr.say(f"warning: not timed under CUDA graphs: {refused}; both are timed without them")
            graphs = bool(opt.cuda_graph) and not refused
            latency = compare({"pruned dense (onnxruntime)": ref_sess, "engine": sess}, feeds,
                              baseline="pruned dense (onnxruntime)")
            latency["cuda_graph"] = graphs
            if refused:
                latency["cuda_graph_refused"] = refused
            del sess, ref_sess
            plan_dicts = [p.to_dict() for p in plan.nodes]
            if "CUDAExecutionProvider" in providers:
                from .bench.profile import GPU_TIMES_NOTE, attach_kernel_times
                attach_kernel_times(plan_dicts, gpu_times)
                node_times_from = GPU_TIMES_NOTE if gpu_times else "none (nothing timed on the GPU in tuning)"
            else:
                pr.say("per-node times (onnxruntime profiler)")
                from .bench.profile import PROFILER_NOTE, attach_node_times, node_times
                ref_t = node_times(plan.reference.SerializeToString(), feeds, providers=providers,
                                   make_options=lambda: _options(opt.threads))
                eng_t = node_times(str(stage / "model.onnx"), feeds, providers=providers,
                                   make_options=lambda: _options(opt.threads, stage / "libsparsify_ops.so"))
                attach_node_times(plan_dicts, ref_t, eng_t)
                node_times_from = PROFILER_NOTE
        else:
            pr.stage("report")
        from .bench.report import build_report, write_report
        from .propagate.report import propagation_summary
        meta = {"model": str(model_path), "model_sha256": loaded.sha256, "spec": str(spec_path),
                "spec_sha256": spec.sha256, "devices": list(devices), "decided_by": plan.decided_by,
                "input_shapes": {k: list(np.asarray(x).shape) for k, x in feeds.items()},
                "engine": str(out_dir)}
        if opt.bench:
            meta["per_node_times"] = node_times_from
        if plan.permutation.get("groups"):
            meta["k_reordered_into_2:4_groups"] = "; ".join(describe(g) for g in plan.permutation["groups"])
        if plan.permutation.get("gathers"):
            meta["layernorms_writing_in_k_order"] = ", ".join(r["node"] for r in plan.permutation["gathers"])
        if not_here:
            meta["not_run_here"] = not_here
        report = build_report(plan_nodes=plan_dicts if opt.bench else [p.to_dict() for p in plan.nodes],
                              propagation=propagation_summary(propagated), latency=latency,
                              verification=verification, meta=meta)
        write_report(report, stage)
        write_manifest(stage, {
            "source_model": {"path": str(model_path), "sha256": loaded.sha256},
            "spec": {"path": str(spec_path), "sha256": spec.sha256},
            "devices": list(devices), "cuda_built": bool(getattr(build, "cuda", False)),
            "cuda_arch": list(opt.cuda_arch) if "cuda" in devices else [], "cpu_arch": opt.cpu_arch,
            "decided_by": plan.decided_by,
            "plan": [p.to_dict() for p in plan.nodes],
            "kernels": [k.to_dict() for k, _ in plan.kernels],
            "compaction": plan.compaction.get("removed", {}) if plan.compaction else {},
            "permutation": plan.permutation,
            "input_shapes": meta["input_shapes"],
            "tuning": tuning,
        })
    return report


def runs_nowhere_here(kernels, providers, dtype: str, out_dir, fp16_layernorms: int = 0) -> str | None:
    """Why this host cannot run the engine (None: it can): sparse ops whose kernels exist only for CUDA (fp16
    ones: the CPU kernels are fp32), or fp16 LayerNormGather ops (`fp16_layernorms`; the op layer's CPU kernel is
    fp32), while onnxruntime here has no CUDA provider with a GPU."""
    if "CUDAExecutionProvider" in providers:
        return None
    cpu = {spec.op_key() for spec, _ in kernels if spec.device == "cpu"}
    cuda_only = {spec.op_key() for spec, _ in kernels if spec.device == "cuda"} - cpu
    what = ([f"{len(cuda_only)} sparse op(s) have only CUDA kernels ({dtype}; the CPU kernels are fp32)"]
            if cuda_only else []) + ([f"{fp16_layernorms} fp16 LayerNormGather op(s) run on CUDA only"]
                                     if fp16_layernorms else [])
    if not what:
        return None
    return (f"{' and '.join(what)} and this host has no GPU with onnxruntime-gpu, so the engine was not verified "
            f"or timed here; on the GPU host: sparsify-onnx verify {out_dir} --provider cuda; "
            f"sparsify-onnx bench {out_dir}")


def model_dtype(model) -> str:
    """fp16 when the model's float weights are half precision (the verification tolerance follows it)."""
    from onnx import TensorProto
    return "fp16" if any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer) else "fp32"


def _options(threads: int, library: Path | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if library is not None:
        so.register_custom_ops_library(str(Path(library).absolute()))
    return so


def _sessions(stage: Path, reference, providers, threads: int, fallback=None):
    """(engine session, pruned dense reference session) on the same providers and threads. With `fallback`
    (`providers` ask for CUDA graphs): (engine, reference, None), or, where onnxruntime will not capture either
    model, both on `fallback` and why. It captures a graph only when every node runs on the CUDA execution
    provider, and it places some nodes on the CPU itself (the mask arithmetic of a BERT exported by torch.onnx's
    tracer with dynamic axes, bench/NOTES.md session 15)."""
    import onnxruntime as ort

    def open_(model, library=None):
        try:
            return ort.InferenceSession(model, sess_options=_options(threads, library), providers=providers)
        except Exception as e:
            if fallback is not None and "graph capture" in str(e):
                return None
            if library is None:
                raise
            raise SparsifyError(f"onnxruntime could not open the converted model: {e}",
                                hint="this is a bug in sparsify-onnx; please report it") from None

    sess = open_(str(stage / "model.onnx"), stage / "libsparsify_ops.so")
    ref_sess = open_(reference.SerializeToString())
    if fallback is None:
        return sess, ref_sess
    refused = [name for name, s in (("the pruned dense model", ref_sess), ("the engine", sess)) if s is None]
    if not refused:
        return sess, ref_sess, None
    del sess, ref_sess
    return (*_sessions(stage, reference, fallback, threads),
            f"onnxruntime will not capture {' and '.join(refused)}: it places some nodes on the CPU "
            "(bench/gpu/cpu_nodes.py lists them)")
