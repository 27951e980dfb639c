"""Shared pieces of the CUDA kernel families: template rendering, table formatting, the cost model.

Cost model (used when no GPU is present to tune on; `KernelFamily.cost` returns seconds):

    t = LAUNCH + max(flops / (PEAK[kind] * eff), bytes / BW)

* ``flops = 2 * M * work``, where ``work`` is the number of weight elements the kernel
  actually multiplies (live blocks or tile rows, padding included).
* ``bytes`` = X read once + Y written once (+ residual read) + the packed values, at
  ``BW`` = 4.0e12 B/s (H200 device-to-device copy measured at 4.3 TB/s).
* ``PEAK`` per compute path, as our kernels run it (not the chip's peak): tensor-core fp16
  mma.sync mainloops 200e12 FLOP/s of live work (session 2 on the H200: 140-200 TFLOP/s at
  8192^3 for block 32/64 and tile kernels), CUDA-core fp32 FMA 50e12, CUDA-core gathers (CSR)
  5e12 (the H200 table: 0.06x-0.14x of cuBLAS). 2:4 on cuSPARSELt is not modelled from a peak:
  ``nm.lt_speedup`` gives the speedup over cuBLAS measured on the H200 at this size.  ``eff`` penalises narrow CTA tiles: the A operand is re-read from
  shared memory once per BN output columns, so eff = min(1, BN / 64) on tensor cores.
* ``LAUNCH`` = 3 us per kernel launch.

These constants are leads from the H200 (see bench/NOTES-cuda.md); tuning on the
target replaces them with measured times.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..registry import GeneratedSource, KernelSpec, PackedWeight

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")

BW = 4.0e12
LAUNCH = 3e-6
PEAK = {"tc": 200e12, "simt": 50e12, "csr": 5e12}  # the wgmma families have their own wave model (wgmma.py)

DEFAULT_ARCH = ("sm_80", "sm_90")


@lru_cache(maxsize=1)
def env():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)


def render_template(template: str, **ctx) -> str:
    return env().get_template(template).render(**ctx)


def fmt_array(a, per_line: int = 48) -> str:
    """Comma-separated integers, wrapped, for a C initializer (at least one element)."""
    a = np.asarray(a).ravel()
    if a.size == 0:
        return "0"
    s = [str(int(x)) for x in a.tolist()]
    return ",\n  ".join(", ".join(s[i:i + per_line]) for i in range(0, len(s), per_line))


def index_ctype(max_value: int) -> str:
    return "unsigned short" if max_value < 65536 else "int"


def epilogue_ctx(spec: KernelSpec) -> dict:
    return {"has_bias": spec.epilogue.bias, "has_residual": spec.epilogue.residual,
            "act": spec.epilogue.activation}


def base_ctx(spec: KernelSpec, packed: PackedWeight) -> dict:
    name = spec.procedural_name()
    return {"name": name, "ns": name, "spec_hash": spec.spec_hash(), "K": spec.K, "N": spec.N,
            "pattern": spec.pattern.short(), "nnz": packed.nnz, "dtype": spec.dtype,
            "ctype": "__half" if spec.dtype == "fp16" else "float", **epilogue_ctx(spec)}


def source(spec: KernelSpec, text: str) -> list[GeneratedSource]:
    name = spec.procedural_name()
    return [GeneratedSource(relpath=f"{name}.cu", text=text, lang="cuda", kernel=name)]


def roofline(M: int, K: int, N: int, work: int, kind: str, eff: float, dtype: str, packed_bytes: int,
             residual: bool = False, launches: int = 1) -> float:
    es = 2 if dtype == "fp16" else 4
    flops = 2.0 * M * work
    byts = es * (M * K + M * N * (2 if residual else 1)) + packed_bytes
    return LAUNCH * launches + max(flops / (PEAK[kind] * max(eff, 1e-3)), byts / BW)
