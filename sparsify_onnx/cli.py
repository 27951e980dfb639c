"""The `sparsify-onnx` command line. One class per subcommand; its docstring is its help.

User errors (SparsifyError) print one message and a hint, exit 1. Anything
else is a bug: traceback, exit 2. Every run ends with a one-line verdict.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .errors import SparsifyError


def _shapes(values: list[str] | None) -> dict:
    from .bench.latency import parse_input_shapes
    return parse_input_shapes(values or [])


class Command:
    name = ""

    def add_args(self, p: argparse.ArgumentParser) -> None:
        pass

    def run(self, args) -> str:
        """Do the work; return the verdict line."""
        raise NotImplementedError


class Inspect(Command):
    """List every node with a weight (op, weight, stored layout, shape, dtype, density, zero structure).

    With SPEC: what each rule selects, and what propagation would add. Compiles nothing.
    """
    name = "inspect"

    def add_args(self, p):
        p.add_argument("model", help="ONNX model")
        p.add_argument("spec", nargs="?", help="sparsity spec (YAML)")
        p.add_argument("--infer-rules", action="store_true", help="infer rules for unknown ops by tensor scrambling")

    def run(self, args):
        from .annotate.inspect import format_model_table, format_spec_table, inspect_model, inspect_spec
        from .graph import load_model
        lo = load_model(args.model)
        if not args.spec:
            rows = inspect_model(lo)
            print(format_model_table(rows))
            return f"inspected {args.model}: {len(rows)} nodes with weights"
        from .annotate import annotate
        from .propagate import propagate
        from .propagate.report import format_propagation
        from .spec import load_spec
        spec = load_spec(args.spec)
        annotated = annotate(lo, spec)
        print(format_spec_table(inspect_spec(lo, spec, annotated)))
        prop = propagate(annotated, enabled=spec.propagate, infer_rules=args.infer_rules)
        print()
        print(format_propagation(prop))
        return f"inspected {args.model} with {args.spec}: {len(annotated.selections)} tensors selected"


class ModelSpecCommand(Command):
    """Base for commands that read MODEL and SPEC and write one .onnx file."""

    def add_args(self, p):
        p.add_argument("model")
        p.add_argument("spec")
        p.add_argument("-o", "--output", required=True, help="output .onnx path")

    def annotated(self, args):
        from .annotate import annotate
        from .graph import load_model
        from .spec import load_spec
        return annotate(load_model(args.model), load_spec(args.spec))


class Prune(ModelSpecCommand):
    """Apply the spec's sparsifiers and write the pruned dense model (any runtime can run it)."""
    name = "prune"

    def run(self, args):
        from .graph import save_model
        annotated = self.annotated(args)
        save_model(annotated.loaded.model, args.output)
        parts = [f"{t}: {s.density_before:.2f} -> {s.density_after:.2f}" for t, s in annotated.selections.items()]
        for line in parts:
            print("  " + line)
        return f"pruned {len(parts)} tensors, wrote {args.output}"


class Compact(ModelSpecCommand):
    """Propagate sparsity and remove dead rows, columns and channels: a smaller dense model."""
    name = "compact"

    def run(self, args):
        import numpy as np

        from .graph import save_model
        from .propagate import propagate
        from .transform.compact import compact
        annotated = self.annotated(args)
        res = compact(propagate(annotated, enabled=True))
        save_model(res.model, args.output)
        before = sum(int(np.prod(t.dims)) for t in annotated.source.graph.initializer)
        after = sum(int(np.prod(t.dims)) for t in res.model.graph.initializer)
        for name, what in res.removed.items():
            print(f"  {name}: {what}")
        return f"compacted {len(res.removed)} weights: {before} -> {after} weight elements, wrote {args.output}"


class Convert(Command):
    """Convert MODEL with SPEC into an engine directory: propagate, rewrite, generate and build kernels,
    verify against the pruned dense model, report latency."""
    name = "convert"

    def add_args(self, p):
        p.add_argument("model")
        p.add_argument("spec")
        p.add_argument("-o", "--output", required=True, help="engine directory (replaced atomically)")
        p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
        p.add_argument("--input-shape", action="append", metavar="NAME=2x128",
                       help="concrete shape of a graph input (repeatable)")
        p.add_argument("--no-verify", action="store_true", help="skip the comparison with the pruned dense model")
        p.add_argument("--no-bench", action="store_true", help="skip the latency measurement in the report")
        p.add_argument("--cuda-graph", action="store_true",
                       help="time the report's latency under onnxruntime's CUDA graphs (enable_cuda_graph), as a "
                            "server would run the engine (CUDA engines on a GPU host)")
        p.add_argument("--policy", default="auto", choices=["auto", "always", "never"],
                       help="auto: the cost model decides per node; always: every supported sparse weight")
        p.add_argument("--arch", default="sm_80,sm_90", help="CUDA architectures (comma-separated)")
        p.add_argument("--cpu-arch", default="native", help="g++ -march value for the CPU kernels")
        p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads for verify/bench")
        p.add_argument("--infer-rules", action="store_true", help="tensor scrambling for ops without a rule")
        p.add_argument("--no-tune", action="store_true",
                       help="do not time CUDA tile candidates on the GPU (the cost model picks)")
        p.add_argument("--no-reorder", action="store_true",
                       help="keep the K order of unstructured weights (by default, converting for CUDA reorders K "
                            "where that is free, e.g. FFN2 with FFN1's columns, so the weight runs as 2:4)")
        p.add_argument("-q", "--quiet", action="store_true")

    def run(self, args):
        from .bench.report import format_console
        from .pipeline import ConvertOptions, convert
        opt = ConvertOptions(device=args.device, verify=not args.no_verify, bench=not args.no_bench,
                             cuda_graph=args.cuda_graph,
                             input_shapes=_shapes(args.input_shape), policy=args.policy,
                             infer_rules=args.infer_rules,
                             cuda_arch=tuple(a.strip() for a in args.arch.split(",") if a.strip()),
                             cpu_arch=args.cpu_arch, threads=args.threads, quiet=args.quiet,
                             tune=not args.no_tune, reorder=not args.no_reorder)
        report = convert(args.model, args.spec, args.output, opt)
        print(format_console(report))
        return f"engine written to {args.output}"


class Bench(Command):
    """Time an engine against its source model in plain onnxruntime, in one run (median, p90, speedup)."""
    name = "bench"

    def add_args(self, p):
        p.add_argument("engine", help="engine directory")
        p.add_argument("--model", help="model to compare against (default: the source model in the manifest)")
        p.add_argument("--input-shape", action="append", metavar="NAME=2x128")
        p.add_argument("--threads", type=int, default=0)
        p.add_argument("--repeat", type=int, default=50)
        p.add_argument("--warmup", type=int, default=10)
        p.add_argument("--json", help="write the numbers to this file")
        p.add_argument("--cuda-graph", action="store_true",
                       help="time both models under onnxruntime's CUDA graphs (CUDA provider option "
                            "enable_cuda_graph; inputs and outputs stay bound on the GPU), as a server would run them")

    def run(self, args):
        import json

        import onnxruntime as ort

        from .bench.latency import CUDA_GRAPH_PROVIDERS, compare, make_inputs
        from .engine import check_engine, load_engine
        m = check_engine(args.engine)
        src = args.model or m["source_model"]["path"]
        if not Path(src).exists():
            raise SparsifyError(f"source model {src} not found", hint="pass --model PATH")
        providers = None
        if args.cuda_graph:
            if not m.get("cuda_built") or "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SparsifyError("--cuda-graph needs an engine built for CUDA and onnxruntime-gpu with a GPU",
                                    hint="convert with --device cuda, and run this on the GPU host")
            providers = list(CUDA_GRAPH_PROVIDERS)
        so = ort.SessionOptions()
        if args.threads:
            so.intra_op_num_threads = args.threads
        eng = load_engine(args.engine, providers=providers, sess_options=so)
        so2 = ort.SessionOptions()
        if args.threads:
            so2.intra_op_num_threads = args.threads
        ref = ort.InferenceSession(str(src), sess_options=so2, providers=providers or eng.get_providers())
        providers = eng.get_providers()
        import onnx
        shapes = _shapes(args.input_shape) or {k: tuple(v) for k, v in (m.get("input_shapes") or {}).items()}
        feeds = make_inputs(onnx.load(str(src), load_external_data=False), shapes, seed=0)
        res = compare({"original (onnxruntime)": ref, "engine": eng}, feeds, baseline="original (onnxruntime)",
                      warmup=args.warmup, repeat=args.repeat)
        from .bench.latency import format_compare
        print(format_compare(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        sp = res["systems"]["engine"]["speedup"]
        return f"engine {sp:.2f}x vs original on {', '.join(providers)}" + (" (CUDA graphs)" if args.cuda_graph else "")


class Verify(Command):
    """Check an engine on this host: rebuild the pruned dense model from the source model and spec named
    in the manifest (their hashes must match), run both on the same random inputs, compare."""
    name = "verify"

    def add_args(self, p):
        p.add_argument("engine", help="engine directory")
        p.add_argument("--model", help="source model (default: the path in the manifest)")
        p.add_argument("--spec", help="spec (default: the path in the manifest)")
        p.add_argument("--input-shape", action="append", metavar="NAME=2x128")
        p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--tolerance", type=float, help="max relative error (default 1e-4 fp32, 1e-2 fp16)")

    def run(self, args):
        from .annotate import annotate
        from .bench.latency import make_inputs
        from .engine import check_engine, load_engine, raise_if_failed, verify
        from .graph import load_model
        from .spec import load_spec
        m = check_engine(args.engine)
        model = args.model or m["source_model"]["path"]
        spec_path = args.spec or m["spec"]["path"]
        lo = load_model(model)
        if lo.sha256 != m["source_model"]["sha256"]:
            raise SparsifyError(f"{model} is not the model this engine was converted from (sha256 differs)",
                                hint="pass --model with the original file")
        spec = load_spec(spec_path)
        if spec.sha256 != m["spec"]["sha256"]:
            raise SparsifyError(f"{spec_path} is not the spec this engine was converted with (sha256 differs)",
                                hint="pass --spec with the original file")
        reference = annotate(lo, spec).loaded.model
        from .engine.load import default_providers
        from .engine.verify import exact_providers
        providers = {"cpu": ["CPUExecutionProvider"],
                     "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}.get(args.provider) \
            or default_providers(m)
        from .pipeline import model_dtype
        dtype = model_dtype(reference)
        providers = exact_providers(providers, dtype)
        sess = load_engine(args.engine, providers=providers)
        shapes = _shapes(args.input_shape) or {k: tuple(v) for k, v in (m.get("input_shapes") or {}).items()}
        feeds = make_inputs(reference, shapes, seed=1)
        v = verify(sess, reference, feeds, dtype=dtype, tolerance=args.tolerance, providers=providers)
        for name, o in v.outputs.items():
            print(f"  {name}: " + (o["error"] if "error" in o else
                                   f"max rel {o['max_rel']:.3g}, max abs {o['max_abs']:.3g}, rel L2 {o['rel_l2']:.3g}"))
        raise_if_failed(v)
        worst = max(o["max_rel"] for o in v.outputs.values())
        return f"engine matches the pruned dense model on {sess.get_providers()[0]} (max rel {worst:.3g})"


COMMANDS = [Inspect(), Prune(), Compact(), Convert(), Verify(), Bench()]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="sparsify-onnx", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"sparsify-onnx {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for c in COMMANDS:
        doc = c.__class__.__doc__ or ""
        sp = sub.add_parser(c.name, help=doc.splitlines()[0], description=doc)
        c.add_args(sp)
        sp.set_defaults(_cmd=c)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        verdict = args._cmd.run(args)
    except SparsifyError as e:
        print(e.render(), file=sys.stderr)
        print(f"FAILED | {args.command} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"INTERNAL ERROR | {args.command}: this is a bug in sparsify-onnx, please report it",
              file=sys.stderr)
        return 2
    print(f"PASSED | {verdict} ({time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
