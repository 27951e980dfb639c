"""Verification: the engine against the pruned dense model in plain onnxruntime."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SparsifyError

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


@dataclass
class Verification:
    passed: bool
    tolerance: float
    outputs: dict = field(default_factory=dict)  # name -> {max_abs, max_rel, rel_l2}
    shapes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tolerance": self.tolerance, "outputs": self.outputs,
                "input_shapes": {k: list(v) for k, v in self.shapes.items()}}


def compare_outputs(got: dict, ref: dict, tol: float) -> Verification:
    v = Verification(passed=True, tolerance=tol)
    for name, r in ref.items():
        a = np.asarray(got[name], dtype=np.float64)
        b = np.asarray(r, dtype=np.float64)
        if a.shape != b.shape:
            v.passed = False
            v.outputs[name] = {"error": f"shape {a.shape} != reference {b.shape}"}
            continue
        if not np.all(np.isfinite(a)):
            v.passed = False
            v.outputs[name] = {"error": "non-finite values"}
            continue
        diff = np.abs(a - b)
        scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-12)
        max_rel = float(diff.max() / scale) if diff.size else 0.0
        rel_l2 = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
        v.outputs[name] = {"max_abs": float(diff.max()) if diff.size else 0.0, "max_rel": max_rel, "rel_l2": rel_l2}
        if max_rel > tol:
            v.passed = False
    return v


def exact_providers(providers, dtype: str) -> list:
    """Provider list for a fair comparison: onnxruntime's CUDA EP computes fp32 MatMul in TF32 by default
    (about 1e-4 relative error), so for fp32 both the engine and the reference run with TF32 off."""
    out = []
    for p in providers:
        name, opts = (p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
        if name == "CUDAExecutionProvider" and dtype == "fp32":
            opts["use_tf32"] = "0"
        out.append((name, opts) if opts else name)
    return out


def verify(session, reference_model, feeds: dict, *, dtype: str = "fp32", tolerance: float | None = None,
           providers=("CPUExecutionProvider",)) -> Verification:
    """Run `reference_model` (ModelProto or path) in plain onnxruntime and `session` on the same feeds.

    Pass the engine session and `providers` built with `exact_providers` so both sides compute alike."""
    import onnxruntime as ort
    tol = tolerance if tolerance is not None else TOLERANCE.get(dtype, 1e-4)
    ref_src = reference_model.SerializeToString() if hasattr(reference_model, "SerializeToString") \
        else str(reference_model)
    ref_sess = ort.InferenceSession(ref_src, providers=exact_providers(providers, dtype))
    names = [o.name for o in ref_sess.get_outputs()]
    ref = dict(zip(names, ref_sess.run(names, feeds)))
    got = dict(zip(names, session.run(names, feeds)))
    v = compare_outputs(got, ref, tol)
    v.shapes = {k: np.asarray(x).shape for k, x in feeds.items()}
    return v


def raise_if_failed(v: Verification) -> None:
    if v.passed:
        return
    rows = [f"  {n}: " + (o["error"] if "error" in o else
                          f"max rel {o['max_rel']:.3g} (abs {o['max_abs']:.3g}), rel L2 {o['rel_l2']:.3g}")
            for n, o in v.outputs.items()]
    raise SparsifyError(f"the engine's outputs differ from the pruned dense model beyond {v.tolerance:g}",
                        details="\n".join(rows),
                        hint="this is a kernel bug; rerun with --no-verify to keep the engine for debugging, "
                             "and please report it with the model and spec")
