"""Latency measurement (DESIGN.md "Measuring").

Every compared system is timed in one run on the same inputs: warm-up, many repetitions,
median / p90 / p99, rounds interleaved so that drift (thermal, frequency, a noisy neighbour)
hits all systems alike. GPU sessions keep inputs and outputs on the device (IO binding) so
transfers are not timed, and each timed run ends with the device synchronised (onnxruntime
synchronises the execution provider at the end of `run_with_iobinding`). A speedup is a ratio
of medians measured in that one run.

- `time_session(session, feeds)` -> `Timing` for one session;
- `compare({name: session}, feeds, baseline=name)` -> dict (medians, p90/p99, speedups);
- `make_inputs(model, shapes)` -> random feeds (token ids inside the embedding table);
- `parse_input_shapes(["input_ids=8x128"])` -> {"input_ids": (8, 128)};
- `format_compare(result)` -> the table the CLI prints.
"""
from __future__ import annotations

import difflib
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SparsifyError

DEFAULT_DIMS = {"batch": 1, "sequence": 128}
# onnxruntime's CUDA provider replaying each run as one CUDA graph (inputs and outputs bound on the GPU): how a
# server runs an engine; `bench --cuda-graph` and `convert --cuda-graph` time both models this way
CUDA_GRAPH_PROVIDERS = (("CUDAExecutionProvider", {"enable_cuda_graph": "1"}), "CPUExecutionProvider")
_SEQ_WORDS = ("seq", "sequence", "len", "length", "token", "time")


# ----------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    runs: list[float] = field(default_factory=list)  # every timed run, ms, in order
    device: str = "cpu"
    iobinding: bool = False

    @classmethod
    def from_runs(cls, runs_ms: list[float], device: str = "cpu", iobinding: bool = False) -> "Timing":
        if not runs_ms:
            raise ValueError("no timed runs")
        a = np.asarray(runs_ms, dtype=np.float64)
        return cls(median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)),
                   p99_ms=float(np.percentile(a, 99)), mean_ms=float(a.mean()), min_ms=float(a.min()),
                   std_ms=float(a.std()), runs=[float(x) for x in a], device=device, iobinding=iobinding)

    def to_dict(self, with_runs: bool = True) -> dict:
        d = asdict(self)
        d["n_runs"] = len(self.runs)
        if with_runs:
            d["runs"] = [round(x, 5) for x in self.runs]
        else:
            d.pop("runs")
        return d


def _is_gpu(session) -> bool:
    provs = session.get_providers()
    return bool(provs) and provs[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider",
                                        "ROCMExecutionProvider")


def _device_id(session) -> int:
    try:
        opts = session.get_provider_options()
        return int(opts.get(session.get_providers()[0], {}).get("device_id", 0))
    except Exception:
        return 0


def _session_feeds(session, feeds: dict, name: str = "session") -> dict:
    wanted = [i.name for i in session.get_inputs()]
    missing = [w for w in wanted if w not in feeds]
    if missing:
        raise SparsifyError(f"{name} needs input {missing[0]!r}, which the feeds do not have",
                            hint=f"feeds have: {', '.join(feeds) or 'nothing'}")
    return {w: feeds[w] for w in wanted}


class _Runner:
    """One prepared way of running a session: plain `run` (CPU) or IO binding with everything
    kept on the device (GPU). Calling it runs once and returns the elapsed milliseconds."""

    def __init__(self, session, feeds: dict, use_iobinding="auto", name: str = "session"):
        import onnxruntime as ort
        self.session = session
        self.feeds = _session_feeds(session, feeds, name)
        self.gpu = _is_gpu(session)
        self.iobinding = self.gpu if use_iobinding == "auto" else bool(use_iobinding)
        self.device = "cuda" if self.gpu else "cpu"
        self.output_names = [o.name for o in session.get_outputs()]
        if self.iobinding:
            dev_id = _device_id(session) if self.gpu else 0
            self.binding = session.io_binding()
            self._keep = []  # the OrtValues must outlive the binding
            for k, v in self.feeds.items():
                ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self.device, dev_id)
                self._keep.append(ov)
                self.binding.bind_ortvalue_input(k, ov)
            for o in self.output_names:
                self.binding.bind_output(o, self.device, dev_id)
            self.binding.synchronize_inputs()

    def __call__(self) -> float:
        if self.iobinding:
            t = time.perf_counter()
            self.session.run_with_iobinding(self.binding)
            self.binding.synchronize_outputs()
            return (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        self.session.run(self.output_names, self.feeds)
        return (time.perf_counter() - t) * 1e3

    def outputs(self) -> list[np.ndarray]:
        if self.iobinding:
            self.session.run_with_iobinding(self.binding)
            return [np.asarray(x) for x in self.binding.copy_outputs_to_cpu()]
        return [np.asarray(x) for x in self.session.run(self.output_names, self.feeds)]


def time_session(session, feeds: dict, *, warmup: int = 10, repeat: int = 50, min_time_s: float = 0.0,
                 use_iobinding="auto", max_runs: int = 100_000) -> Timing:
    """Time `session` on `feeds`: `warmup` untimed runs, then at least `repeat` timed runs and
    at least `min_time_s` seconds of them. `use_iobinding`: "auto" (on for GPU sessions), True
    or False."""
    if repeat < 1 or warmup < 0:
        raise SparsifyError(f"repeat must be >= 1 and warmup >= 0 (got repeat={repeat}, warmup={warmup})")
    run = _Runner(session, feeds, use_iobinding)
    for _ in range(warmup):
        run()
    runs: list[float] = []
    t0 = time.perf_counter()
    while len(runs) < repeat or (time.perf_counter() - t0 < min_time_s and len(runs) < max_runs):
        runs.append(run())
    return Timing.from_runs(runs, run.device, run.iobinding)


def _threads(session) -> int | None:
    try:
        return int(session.get_session_options().intra_op_num_threads)
    except Exception:
        return None


def compare(systems: dict, feeds: dict, *, baseline: str | None = None, warmup: int = 10, repeat: int = 50,
            min_time_s: float = 0.0, use_iobinding="auto", check_outputs: bool = True,
            max_rounds: int = 100_000) -> dict:
    """Time every session of `systems` ({name: InferenceSession}) in one run on the same `feeds`.

    Rounds are interleaved: each round runs every system once, in an order that rotates from
    round to round, so no system always runs first (or right after the same neighbour).
    Returns::

        {"baseline": name, "warmup", "repeat", "rounds", "interleaved": True,
         "inputs": {name: {"shape", "dtype"}}, "host": {...},
         "systems": {name: {"median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "std_ms",
                            "n_runs", "runs", "device", "iobinding", "providers", "threads",
                            "speedup", "speedup_p90"}},     # speedup = baseline median / median
         "speedup": {name: speedup},
         "max_abs_diff": {name: {output: max |y - y_baseline|}}}  # with check_outputs
    """
    if not systems:
        raise SparsifyError("compare() needs at least one system to time")
    names = list(systems)
    baseline = baseline if baseline is not None else names[0]
    if baseline not in systems:
        close = difflib.get_close_matches(baseline, names, 1)
        raise SparsifyError(f"baseline {baseline!r} is not one of the timed systems",
                            hint=f"did you mean {close[0]!r}?" if close else f"systems: {', '.join(names)}")
    if repeat < 1 or warmup < 0:
        raise SparsifyError(f"repeat must be >= 1 and warmup >= 0 (got repeat={repeat}, warmup={warmup})")
    runners = {n: _Runner(s, feeds, use_iobinding, name=n) for n, s in systems.items()}

    diffs: dict = {}
    if check_outputs:
        ref = runners[baseline].outputs()
        for n, r in runners.items():
            if n == baseline:
                continue
            got, d = r.outputs(), {}
            for oname, a, b in zip(r.output_names, got, ref):
                if a.shape != b.shape:
                    d[oname] = f"shape {list(a.shape)} != {list(b.shape)}"
                else:
                    d[oname] = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
            diffs[n] = d

    order = list(names)
    for i in range(warmup):
        for n in order[i % len(order):] + order[:i % len(order)]:
            runners[n]()
    runs: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.perf_counter()
    rounds = 0
    while rounds < repeat or (time.perf_counter() - t0 < min_time_s and rounds < max_rounds):
        k = rounds % len(order)
        for n in order[k:] + order[:k]:
            runs[n].append(runners[n]())
        rounds += 1

    import onnxruntime as ort
    res_systems = {}
    for n in names:
        t = Timing.from_runs(runs[n], runners[n].device, runners[n].iobinding)
        d = t.to_dict()
        d["providers"] = list(systems[n].get_providers())
        d["threads"] = _threads(systems[n])
        res_systems[n] = d
    base = res_systems[baseline]
    for n, d in res_systems.items():
        d["speedup"] = base["median_ms"] / d["median_ms"] if d["median_ms"] > 0 else float("inf")
        d["speedup_p90"] = base["p90_ms"] / d["p90_ms"] if d["p90_ms"] > 0 else float("inf")
    return {
        "baseline": baseline, "warmup": warmup, "repeat": repeat, "rounds": rounds, "interleaved": True,
        "min_time_s": min_time_s, "wall_s": time.perf_counter() - t0,
        "inputs": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in feeds.items()},
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "python": platform.python_version(), "onnxruntime": ort.__version__},
        "systems": res_systems,
        "speedup": {n: d["speedup"] for n, d in res_systems.items()},
        "max_abs_diff": diffs,
    }


def format_compare(result: dict) -> str:
    """The latency table of a `compare()` result, for the console."""
    systems = result.get("systems") or {}
    if not systems:
        return "latency: nothing timed"
    first = next(iter(systems.values()))
    provs = first.get("providers") or []
    thr = first.get("threads")
    ins = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in (result.get("inputs") or {}).items())
    head = (f"latency: {result.get('rounds', '?')} interleaved rounds after {result.get('warmup', '?')} warm-up, "
            f"{provs[0] if provs else '?'}" + (f", intra-op threads {thr}" if thr else "") + (f", inputs {ins}" if ins else ""))
    w = max(len("system"), *(len(n) for n in systems))
    lines = [head, f"  {'system':<{w}}  {'median ms':>10}  {'p90 ms':>9}  {'p99 ms':>9}  {'speedup':>8}"]
    for n, d in systems.items():
        mark = "  (baseline)" if n == result.get("baseline") else ""
        lines.append(f"  {n:<{w}}  {d['median_ms']:>10.3f}  {d['p90_ms']:>9.3f}  {d['p99_ms']:>9.3f}  "
                     f"{d['speedup']:>7.2f}x{mark}")
    for n, d in (result.get("max_abs_diff") or {}).items():
        vals = [v for v in d.values() if isinstance(v, float)]
        bad = [f"{k}: {v}" for k, v in d.items() if not isinstance(v, float)]
        if bad:
            lines.append(f"  warning: {n} outputs differ from the baseline's: {'; '.join(bad)}")
        elif vals:
            note = " (expected when the baseline is the unpruned model)" if max(vals) > 1e-3 else ""
            lines.append(f"  {n}: max abs output difference vs baseline {max(vals):.3g}{note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# inputs


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["input_ids=8x128", "mask=8,128"]`` -> ``{"input_ids": (8, 128), "mask": (8, 128)}``."""
    out: dict[str, tuple[int, ...]] = {}
    hint = "write --input-shape NAME=DIMS with positive integer dims joined by x, e.g. input_ids=8x128"
    for raw in values or []:
        text = str(raw).strip()
        if "=" not in text:
            raise SparsifyError(f"--input-shape {raw!r} has no '='", hint=hint)
        name, dims = (s.strip() for s in text.rsplit("=", 1))
        if not name:
            raise SparsifyError(f"--input-shape {raw!r} names no input", hint=hint)
        parts = [p.strip() for p in re.split(r"[x,X*]", dims)] if dims else []
        if not parts or any(not re.fullmatch(r"\d+", p) for p in parts):
            raise SparsifyError(f"--input-shape {raw!r}: {dims!r} is not a list of integer dims", hint=hint)
        shape = tuple(int(p) for p in parts)
        if any(d <= 0 for d in shape):
            raise SparsifyError(f"--input-shape {raw!r}: every dim must be positive", hint=hint)
        if name in out and out[name] != shape:
            raise SparsifyError(f"--input-shape gives {name!r} twice ({out[name]} and {shape})",
                                hint="give each input once")
        out[name] = shape
    return out


_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
       9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
_PASS_THROUGH = {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Slice",
                 "Transpose"}


def _load(model):
    import onnx
    if isinstance(model, (str, Path)):
        try:
            return onnx.load(str(model), load_external_data=False)
        except Exception as e:
            raise SparsifyError(f"cannot read ONNX model {model}: {e}") from None
    return model


def _table_rows(graph) -> dict[str, int]:
    """First dim of every initializer / Constant output (the rows of a Gather table)."""
    rows = {t.name: int(t.dims[0]) for t in graph.initializer if len(t.dims) >= 1}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and len(a.t.dims) >= 1:
                    rows[n.output[0]] = int(a.t.dims[0])
    return rows


def index_limits(model) -> dict[str, int]:
    """For each integer graph input used (directly or through Cast/Reshape/...) as the indices
    of a Gather on a weight: the number of rows of the smallest such table."""
    model = _load(model)
    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    rows = _table_rows(g)
    out: dict[str, int] = {}
    for inp in g.input:
        frontier, seen = [inp.name], set()
        for _ in range(6):
            nxt = []
            for t in frontier:
                if t in seen:
                    continue
                seen.add(t)
                for n, i in consumers.get(t, []):
                    if n.op_type == "Gather" and i == 1 and n.input[0] in rows:
                        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
                        if axis == 0:
                            out[inp.name] = min(out.get(inp.name, 1 << 62), rows[n.input[0]])
                    elif n.op_type in _PASS_THROUGH and i == 0:
                        nxt.extend(n.output)
            frontier = nxt
    return out


def _default_dim(param: str, defaults: dict) -> int | None:
    if param in defaults:
        return int(defaults[param])
    low = param.lower()
    if "batch" in low or low in ("n", "b", "bs"):
        return int(defaults.get("batch", DEFAULT_DIMS["batch"]))
    if any(w in low for w in _SEQ_WORDS):
        return int(defaults.get("sequence", DEFAULT_DIMS["sequence"]))
    return None


def make_inputs(model, shapes: dict | None = None, seed: int = 0, vocab_limits: dict | None = None, *,
                defaults: dict | None = None) -> dict[str, np.ndarray]:
    """Random feeds for every graph input of `model` (ModelProto or path).

    Shapes: `shapes` ({"input_ids": (8, 128)}) first; a symbolic dim takes the value the same
    dim name got from another given input, else a default (`defaults`, then batch=1 and
    sequence=128 for names that look like batch / sequence). Values per dtype: floats N(0, 1);
    integer inputs that index a Gather table (token ids) uniform in [0, rows) (or
    `vocab_limits[name]`); names containing "mask" ones; "position" ids 0..S-1; other
    integers zeros; bools True.
    """
    model = _load(model)
    g = model.graph
    shapes = {k: tuple(int(d) for d in v) for k, v in (shapes or {}).items()}
    defaults = {**DEFAULT_DIMS, **(defaults or {})}
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    names = [i.name for i in inputs]
    for k in shapes:
        if k not in names:
            close = difflib.get_close_matches(k, names, 1)
            raise SparsifyError(f"--input-shape names {k!r}, which is not an input of the model",
                                hint=(f"did you mean {close[0]!r}? " if close else "")
                                + f"inputs: {', '.join(names) or 'none'}")
    # bind symbolic dims from the given shapes
    bound: dict[str, tuple[int, str]] = {}
    for i in inputs:
        if i.name not in shapes:
            continue
        dims = list(i.type.tensor_type.shape.dim)
        given = shapes[i.name]
        if i.type.tensor_type.HasField("shape") and len(dims) != len(given):
            raise SparsifyError(f"--input-shape {i.name}={'x'.join(map(str, given))} has rank {len(given)}, "
                                f"but the input has rank {len(dims)}",
                                hint=f"{i.name} is {_describe(dims)}")
        for d, v in zip(dims, given):
            if d.HasField("dim_value") and d.dim_value != v:
                raise SparsifyError(f"--input-shape {i.name}={'x'.join(map(str, given))} conflicts with the "
                                    f"model's fixed dim {d.dim_value}", hint=f"{i.name} is {_describe(dims)}")
            if d.HasField("dim_param") and d.dim_param:
                p = d.dim_param
                if p in bound and bound[p][0] != v:
                    raise SparsifyError(f"dim {p!r} is {bound[p][0]} in {bound[p][1]} but {v} in {i.name}",
                                        hint="inputs that share a symbolic dim must agree on it")
                bound.setdefault(p, (v, i.name))
    limits = index_limits(model)
    limits.update(vocab_limits or {})
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i in inputs:
        tt = i.type.tensor_type
        if not i.type.HasField("tensor_type"):
            raise SparsifyError(f"input {i.name!r} is not a tensor; make_inputs cannot fill it")
        if i.name in shapes:
            shape = shapes[i.name]
        else:
            shape = []
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape.append(int(d.dim_value))
                    continue
                p = d.dim_param if d.HasField("dim_param") else ""
                v = bound[p][0] if p in bound else _default_dim(p, defaults) if p else None
                if v is None:
                    raise SparsifyError(f"input {i.name!r} has a dim {p or '(unnamed)'!r} with no default",
                                        hint=f"give it a concrete shape: --input-shape {i.name}=DIMS "
                                             f"(it is {_describe(list(tt.shape.dim))})")
                shape.append(v)
            shape = tuple(shape)
        dtype = _NP.get(tt.elem_type)
        if dtype is None:
            raise SparsifyError(f"input {i.name!r} has an element type ({tt.elem_type}) make_inputs cannot fill")
        low = i.name.lower()
        if np.issubdtype(dtype, np.floating):
            a = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            a = np.ones(shape, np.bool_)
        elif "mask" in low:
            a = np.ones(shape, dtype)
        elif "position" in low and len(shape) >= 1 and shape[-1] <= limits.get(i.name, 1 << 62):
            a = np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype).copy()
        elif i.name in limits:
            a = rng.integers(0, max(int(limits[i.name]), 1), size=shape).astype(dtype)
        else:
            a = np.zeros(shape, dtype)
        out[i.name] = a
    return out


def _describe(dims) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims) + "]"
