"""n:m (2:4) sparse weights: ``cuda_nm_sparselt``.

cuSPARSELt (NVIDIA's structured-sparse GEMM on the sparse tensor cores) is loaded at run time with
dlopen (``$SPARSIFY_CUSPARSELT_LIB``, else ``libcusparseLt.so.0`` on the loader path; the
``nvidia-cusparselt-cu13`` wheel ships it), so the op library has no link-time dependency on it.
Without it (or with ``SPARSIFY_NO_CUSPARSELT=1``) the same launcher runs a plain n:m FMA kernel:
correct, slow. The group offsets are baked into the source as hex (2 bits each for m <= 4).
First call per weight: scatter + compress (cuSPARSELt owns that copy); first call per M: a plan per
algorithm id 0..min(max, ``$SPARSIFY_LT_MAX_ALG`` or 33), each timed with CUDA events on the op's stream,
the fastest kept (the library default ran 2.3x slower than the best id at 8192^3 on the H200, and
``cusparseLtMatmulSearch`` crashes on ids past 33 there; ``bench/cuda/lt_probe.cu``).
``$SPARSIFY_LT_ALG`` forces an id (or ``default``). Tile: () (cuSPARSELt's algorithm is chosen at run time).
"""
from __future__ import annotations

import os

import numpy as np

from ..packing import padded_shape
from ..registry import KernelFamily, register_family
from .common import base_ctx, render_template, roofline, source


# cuSPARSELt 2:4 against cuBLAS dense on the H200, kernel time, algorithm chosen per M (bench/NOTES.md,
# session 2): (log2(M*N*K), speedup) at 4096x768x768, 4096x3072x768 (and 4096x768x3072), 8192^3.
LT_SPEEDUP = ((31.17, 0.77), (33.17, 1.08), (39.0, 1.53))


def lt_speedup(M: int, N: int, K: int) -> float:
    """Measured 2:4 speedup over dense, interpolated in log2(M*N*K) and clamped to the measured range."""
    import math
    x = math.log2(max(1, M) * N * K)
    pts = LT_SPEEDUP
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def hex_lines(idx: np.ndarray, bits: int, per_line: int = 256) -> str:
    a = np.ascontiguousarray(idx, dtype=np.uint8).ravel()
    per = 8 // bits
    pad = (-a.size) % per
    if pad:
        a = np.concatenate([a, np.zeros(pad, np.uint8)])
    a = a.reshape(-1, per).astype(np.uint16)
    by = np.zeros(a.shape[0], np.uint16)
    for j in range(per):
        by |= a[:, j] << (j * bits)
    hx = by.astype(np.uint8).tobytes().hex()
    lines = [f'  "{hx[i:i + per_line]}",' for i in range(0, len(hx), per_line)]
    return "\n".join(lines + ["  nullptr"])


def find_cusparselt() -> str | None:
    """Path of libcusparseLt from the nvidia-cusparselt wheel, if installed (for SPARSIFY_CUSPARSELT_LIB)."""
    try:
        import importlib.util
        for pkg in ("nvidia.cu13", "nvidia.cusparselt", "nvidia"):
            spec = importlib.util.find_spec(pkg)
            for root in (spec.submodule_search_locations or []) if spec else []:
                for sub in ("lib", "cusparselt/lib", "cu13/lib", "cusparselt/cu13/lib"):
                    p = os.path.join(root, sub, "libcusparseLt.so.0")
                    if os.path.exists(p):
                        return p
    except Exception:  # noqa: BLE001
        return None
    return None


def use_cusparselt() -> str | None:
    """Point the op library at libcusparseLt for this process: ``$SPARSIFY_CUSPARSELT_LIB`` when set, else the
    wheel's copy found by :func:`find_cusparselt` (exported into the variable, which the kernels read on
    their first call). None when neither exists: n:m ops on CUDA then run the FMA fallback, and the
    library says so once on stderr."""
    path = os.environ.get("SPARSIFY_CUSPARSELT_LIB")
    if path:
        return path
    path = find_cusparselt()
    if path:
        os.environ["SPARSIFY_CUSPARSELT_LIB"] = path
    return path


@register_family
class CudaNmSparseLt(KernelFamily):
    """n:m (2:4 on sparse tensor cores through cuSPARSELt, loaded with dlopen; FMA fallback), fp16."""
    name = "cuda_nm_sparselt"
    device = "cuda"
    patterns = ("nm",)
    dtypes = ("fp16",)

    def supports(self, pattern, K, N, dtype):
        why = super().supports(pattern, K, N, dtype)
        if why:
            return why
        if pattern.m > 16:
            return f"{self.name} handles m <= 16, not {pattern.m}"
        return None

    def render(self, spec, packed):
        p = spec.pattern
        bits = 2 if p.m <= 4 else 4
        Kp, _ = padded_shape(p, spec.K, spec.N)
        ctx = base_ctx(spec, packed)
        ctx.update(n=p.n, m=p.m, Kp=Kp, bits=bits, idx_hex=hex_lines(packed.tables["idx"], bits))
        return source(spec, render_template("cuda_nm_sparselt.cu.j2", **ctx))

    def cost(self, spec, packed, M):
        p = spec.pattern
        ep = spec.epilogue
        extra = 1 if (ep.bias or ep.residual or ep.activation != "none") else 0
        if not (p.n == 2 and p.m == 4):  # the FMA fallback
            return roofline(M, spec.K, spec.N, int(spec.K * spec.N * p.n / p.m), "simt", 1.0, spec.dtype,
                            packed.values.nbytes, ep.residual, launches=1 + extra)
        # cuSPARSELt: cuBLAS's time over the speedup measured at this size, plus our epilogue pass
        from ...transform.cost import GPU_BANDWIDTH, GPU_OVERHEAD_S, dense_cost
        t = dense_cost("cuda", M, spec.K, spec.N, spec.dtype) / lt_speedup(M, spec.N, spec.K)
        if extra:
            t += 2 * (3 if ep.residual else 2) * M * spec.N / GPU_BANDWIDTH + GPU_OVERHEAD_S
        return t
