"""Kernel benchmark: our generated CUDA kernels against dense cuBLAS and the sparse kernels
PyTorch offers (Triton BSR, cuSPARSE CSR, 2:4 through cuSPARSELt), in one run.

    python -m sparsify_onnx.bench.kernels [--shapes 4096x3072x768,...] [--patterns block32,2:4]
        [--densities 0.1,0.25] [--json out.json] [--sweep] [--build-only]

Shapes are (M, N, K) with Y[M, N] = X[M, K] @ W[K, N], fp16 in/out. ``density`` is the
fraction of the weight kept (blocks, tile rows or elements); 2:4 is always 0.5. Kernel
time is the median over trials of CUDA-graph replay of ``--reps`` back-to-back calls
(events around a plain loop where capture fails), inputs resident on the device. Every
result of ours is checked against ``X.float() @ W.float()`` after poisoning Y with NaN.

Patterns ending in ``-wgmma`` use the Hopper families (``cuda_tile_wgmma``, ``cuda_bcsr_wgmma``, ``cuda_nm_wgmma``,
``cuda_cover_wgmma``); on other GPUs
their launchers run the portable kernel they carry, and the row says "fallback ran".
``unstructured-korder-wgmma`` is the same random unstructured weight as ``unstructured-wgmma`` with its rows (K) in the
order the transform stage gives it where K can be reordered for free (transform/permute.py: BERT's FFN2, whose K is
FFN1's output features), so the cover runs in k's own order; X is the same random X. ``unstructured-horder-wgmma``
orders each 64 rows among themselves, as for attention's output projection (K = heads x 64, ordered per head);
``unstructured-horder1-wgmma`` the same with one seed per head, which leaves a few entries past two (the residual).
``unstructured-outlier-wgmma`` is the K-ordered weight with one column half dense before the order (an outlier
feature of trained weights: 56% of K, past what 2:4 holds), whose entries past two crowd that one column.

``--build-only`` renders and compiles every kernel into the cache
(``$SPARSIFY_CACHE_DIR/cuda-dev``) without a GPU, so a GPU run only loads them.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import sys
import time
import zlib

import numpy as np

from ..codegen.packing import pack
from ..codegen.registry import Epilogue, KernelSpec, get_family
from ..pattern import Pattern
from ..tune.build import CudaLib, build_many

SHAPES = [(4096, 768, 768), (4096, 3072, 768), (4096, 768, 3072), (8192, 8192, 8192)]
DENSITIES = [0.5, 0.25, 0.1, 0.05]
PATTERNS = ["block16", "block32", "block64", "unstructured", "2:4", "tile",
            "block16-wgmma", "block32-wgmma", "block64-wgmma", "tile-wgmma", "2:4-wgmma", "unstructured-wgmma",
            "unstructured-korder-wgmma", "unstructured-horder-wgmma"]  # -wgmma: the Hopper families (off Hopper: their fallback)
FAMILY = {"block": "cuda_bcsr_tc", "unstructured": "cuda_csr", "nm": "cuda_nm_sparselt", "tile": "cuda_tile"}
WGMMA_FAMILY = {"block": "cuda_bcsr_wgmma", "tile": "cuda_tile_wgmma", "nm": "cuda_nm_wgmma",
                "unstructured": "cuda_cover_wgmma"}  # "<pattern>-wgmma": the experimental kernels


def family_for(pname: str, pat: Pattern) -> str:
    return WGMMA_FAMILY[pat.kind] if pname.endswith("-wgmma") else FAMILY[pat.kind]


def make_pattern(name: str) -> Pattern:
    if name.endswith("-wgmma"):  # e.g. block32-wgmma, tile-wgmma: the experimental wgmma kernels, asked for by name
        os.environ["SPARSIFY_WGMMA"] = "1"
        return make_pattern(name[: -len("-wgmma")])
    if name.startswith("block"):
        b = int(name[5:])
        return Pattern("block", block=(b, b))
    if name in ("unstructured", "unstructured-korder", "unstructured-horder", "unstructured-horder1",
                "unstructured-outlier"):
        return Pattern("unstructured")
    if name == "2:4":
        return Pattern("nm", n=2, m=4)
    if name.startswith("tile"):
        return Pattern("tile", granularity=int(name[4:] or 128))
    raise SystemExit(f"unknown pattern {name}")


def make_weight(pattern: Pattern, K: int, N: int, density: float, seed: int) -> np.ndarray:
    """A random fp16 weight [K, N] with exactly this pattern at this density (never all-zero)."""
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((K, N)) * (1.0 / math.sqrt(max(1.0, K * density)))).astype(np.float32)
    W[W == 0] = 0.01
    if pattern.kind == "block":
        h, w = pattern.block
        kb, nb = -(-K // h), -(-N // w)
        keep = rng.random((kb, nb)) < density
        keep.flat[rng.integers(keep.size)] = True
        mask = np.kron(keep, np.ones((h, w), bool))[:K, :N]
    elif pattern.kind == "unstructured":
        mask = rng.random((K, N)) < density
    elif pattern.kind == "nm":
        n, m = pattern.n, pattern.m
        r = rng.random((K // m, m, N)).argsort(axis=1)
        mask = (r < n).reshape(K, N)
    elif pattern.kind == "tile":
        G = pattern.granularity
        T = -(-N // G)
        keep = rng.random((K, T)) < density
        mask = np.repeat(keep, G, axis=1)[:, :N]
    else:
        mask = np.ones((K, N), bool)
    return (W * mask).astype(np.float16)


def plan_cases(shapes, patterns, densities, sweep=False, seed=0):
    cases = []
    for (M, N, K) in shapes:
        for pname in patterns:
            pat = make_pattern(pname)
            fam = get_family(family_for(pname, pat))
            dens = [0.5] if pat.kind == "nm" else densities
            for d in dens:
                why = fam.supports(pat, K, N, "fp16")
                case = dict(M=M, N=N, K=K, pattern=pname, density=d, family=fam.name)
                if why:
                    case["skip"] = why
                    cases.append(case)
                    continue
                if pat.kind == "unstructured" and K * N * d > 4e6:
                    case["skip"] = "unstructured tables over 4M entries are not baked (compile size)"
                    cases.append(case)
                    continue
                tiles = [()]
                if sweep and (pat.kind in ("block", "tile") and d in (0.1, 0.25) or pat.kind == "nm"
                              or pname.startswith("unstructured-") and d == 0.1):
                    tiles = fam.tile_candidates(pat, K, N, "fp16")[:12 if M * N * K < 2 ** 36 else 6]
                base = pname.removesuffix("-wgmma").split("-")[0]  # (-korder, -horder: the same weight, reordered)
                for tile in tiles:
                    cases.append(dict(case, tile=tile, seed=seed + zlib.crc32(f"{N},{K},{base},{d}".encode()) % 100000))
    return cases


_WCACHE: dict = {}


def _weight(pname, K, N, density, seed):
    key = (pname, K, N, density, seed)
    if key not in _WCACHE:
        _WCACHE.clear()  # cases come grouped: keep one weight at a time
        pat = make_pattern(pname)
        W = make_weight(pat, K, N, density, seed)
        if "-outlier" in pname:
            rng = np.random.default_rng(seed + 1)
            W[:, N // 3] = np.where(rng.random(K) < 0.56, rng.standard_normal(K) / math.sqrt(K * density), 0)
        if ("-korder" in pname or "-horder" in pname or "-outlier" in pname) and K % 64 == 0:
            from ..transform.permute import TAIL_ROWS, best_natural_order, natural_order
            d = 64 if "-horder" in pname else K  # (rows ordered among themselves, as convert orders them)
            order = natural_order if "-horder1" in pname else \
                (lambda m, s: best_natural_order(m, s, tail=TAIL_ROWS if d == K else 0))
            W = np.ascontiguousarray(W[np.concatenate([h + order(W[h:h + d] != 0, 0) for h in range(0, K, d)])])
        _WCACHE[key] = (W, pack(W, pat, dtype=np.float16))
    return _WCACHE[key]


def render_case(case):
    pat = make_pattern(case["pattern"])
    if "W" in case:  # (a given [K, N] weight, e.g. a trained one: bench/cuda/ab.py AB_WEIGHT)
        W, pk = case["W"], pack(case["W"], pat, dtype=np.float16)
    else:
        W, pk = _weight(case["pattern"], case["K"], case["N"], case["density"], case["seed"])
    fam = get_family(case["family"])
    spec = KernelSpec("linear", fam.name, "cuda", "fp16", pat, case["K"], case["N"], case.get("epilogue", Epilogue()),
                      tile=tuple(case["tile"]), arch=("sm_90",), tables_hash=pk.tables_hash())
    return W, pk, spec, fam.render(spec, pk)


def build_all(cases, jobs=None):
    groups: dict = {}
    rendered = {}
    t0 = time.time()
    for i, c in enumerate(cases):
        if "skip" in c:
            continue
        W, pk, spec, srcs = render_case(c)
        rendered[i] = (W, pk, spec)
        # one library per (shape, pattern): few nvcc calls, none too large
        key = (c["M"], c["N"], c["K"], c["pattern"], len(groups.get((c["M"], c["N"], c["K"], c["pattern"]), [])) // 6)
        groups.setdefault(key, []).extend(srcs)
    print(f"rendered {len(rendered)} kernels in {time.time() - t0:.1f}s; compiling {len(groups)} libraries",
          file=sys.stderr, flush=True)
    t0 = time.time()
    keys = list(groups)
    paths = build_many([groups[k] for k in keys], jobs=jobs)
    print(f"compiled in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    libs = {}
    for k, p in zip(keys, paths):
        for s in groups[k]:
            libs[s.kernel] = p
    return rendered, libs


def _torch_refs(torch, X, Wd, pat, reps, dev):
    """Times of PyTorch's own options for this weight: dict name -> seconds (or error text)."""
    out = {}
    Xt = X.t().contiguous()
    Wt = Wd.t().contiguous()  # [N, K]
    if pat.kind == "block":
        try:
            from torch.sparse._triton_ops import bsr_dense_mm
            bsr = Wt.to_sparse_bsr((pat.block[1], pat.block[0]))
            out["torch_bsr_triton"] = dev.time(lambda: bsr_dense_mm(bsr, Xt), reps)
        except Exception as e:  # noqa: BLE001
            out["torch_bsr_triton"] = f"error: {type(e).__name__}: {str(e)[:120]}"
    if pat.kind == "unstructured":
        try:
            csr = Wt.to_sparse_csr()
            out["cusparse_csr"] = dev.time(lambda: csr @ Xt, max(2, reps // 4), graph=False)
        except Exception as e:  # noqa: BLE001
            out["cusparse_csr"] = f"error: {type(e).__name__}: {str(e)[:120]}"
    if pat.kind == "nm":
        try:
            from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
            SparseSemiStructuredTensor._FORCE_CUTLASS = False
            ss = to_sparse_semi_structured(Wt)
            out["torch_2to4_cusparselt"] = dev.time(lambda: torch.mm(ss, Xt), reps)
        except Exception as e:  # noqa: BLE001
            out["torch_2to4_cusparselt"] = f"error: {type(e).__name__}: {str(e)[:120]}"
    return out


def run(cases, rendered, libs, reps=20, out_json=None):
    import torch
    from ..tune.device import TorchDevice
    dev = TorchDevice()
    from ..codegen.cuda.nm import use_cusparselt
    use_cusparselt()
    loaded = {}
    results = []
    dense_cache = {}
    for i, c in enumerate(cases):
        rec = {k: v for k, v in c.items() if k != "seed"}
        rec["tile"] = list(c.get("tile", ()))
        if "skip" in c:
            results.append(rec)
            continue
        W, pk, spec = rendered[i]
        M, N, K = c["M"], c["N"], c["K"]
        name = spec.procedural_name()
        rec["kernel"] = name
        try:
            path = libs[name]
            lib = loaded.get(path) or loaded.setdefault(path, CudaLib(path))
            fn = lib.launcher(name)
            g = torch.Generator(device="cuda").manual_seed(c["seed"])
            X = torch.randn((M, K), device="cuda", dtype=torch.float16, generator=g)
            Wd = torch.from_numpy(W).cuda()
            V = torch.from_numpy(np.ascontiguousarray(pk.values)).cuda()
            Y = torch.empty((M, N), device="cuda", dtype=torch.float16)
            sb = lib.scratch(name, M)
            S = torch.empty(max(sb, 1), device="cuda", dtype=torch.uint8)

            # references first: a kernel of ours that breaks the context cannot take them along
            dk = (M, N, K)
            if dk not in dense_cache:
                dense_cache[dk] = dev.time(lambda: torch.matmul(X, Wd), reps) * 1e6
            rec["cublas_us"] = dense_cache[dk]
            for k, v in _torch_refs(torch, X, Wd, spec.pattern, reps, dev).items():
                rec[k + "_us"] = v * 1e6 if isinstance(v, float) else v

            def call():
                rc = fn(X.data_ptr(), V.data_ptr(), None, None, Y.data_ptr(), M,
                        torch.cuda.current_stream().cuda_stream, S.data_ptr(), sb)
                if rc:
                    raise RuntimeError(f"launcher returned {rc}")
            Y.fill_(float("nan"))
            call()
            torch.cuda.synchronize()
            ref = X.float() @ Wd.float()
            err = (torch.linalg.norm((Y.float() - ref)) / torch.linalg.norm(ref)).item()
            rec["rel_err"] = err if math.isfinite(err) else float("nan")
            rec["ok"] = bool(math.isfinite(err) and err < 1e-2)
            rec["ours_us"] = dev.time(call, reps) * 1e6
            if hasattr(lib.lib, f"{name}_cuda_uses_cusparselt"):
                rec["uses_cusparselt"] = bool(getattr(lib.lib, f"{name}_cuda_uses_cusparselt")())
                alg = getattr(lib.lib, f"{name}_cuda_lt_alg")
                alg.argtypes = [ctypes.c_int64]
                rec["cusparselt_alg_id"] = int(alg(M))
            if hasattr(lib.lib, f"{name}_cuda_uses_wgmma"):  # False: the portable kernel ran (not a Hopper GPU)
                rec["uses_wgmma"] = bool(getattr(lib.lib, f"{name}_cuda_uses_wgmma")())
            rec["speedup_vs_cublas"] = rec["cublas_us"] / rec["ours_us"]
            # the two floors (METHOD.md): bytes at 4.3 TB/s, live FLOPs at 790 TFLOP/s
            byts = 2 * (M * K + M * N) + pk.values.nbytes
            rec["floor_mem_us"] = byts / 4.3e12 * 1e6
            rec["floor_flop_us"] = 2.0 * M * pk.nnz / 790e12 * 1e6
            del X, Wd, V, Y, S
        except Exception as e:  # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        results.append(rec)
        print(_row(rec), flush=True)
        if out_json:  # keep what is done so far, in case the run is cut short
            with open(out_json, "w") as f:
                json.dump({"meta": {"partial": True}, "results": results}, f)
    meta = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "host": platform.node(), "reps": reps}
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return meta, results


def _f(v, nd=1):
    return f"{v:.{nd}f}" if isinstance(v, (int, float)) else ("-" if v is None else "err")


def _row(r):
    if "skip" in r:
        return f"| {r['M']},{r['N']},{r['K']} | {r['pattern']} | {r['density']} | skipped: {r['skip']} |"
    if "error" in r:
        return f"| {r['M']},{r['N']},{r['K']} | {r['pattern']} | {r['density']} | error: {r['error']} |"
    other = r.get("torch_bsr_triton_us", r.get("cusparse_csr_us", r.get("torch_2to4_cusparselt_us")))
    tile = "x".join(map(str, r["tile"])) or "default"
    pname = r["pattern"] + (" (fallback ran)" if r.get("uses_wgmma") is False else "")
    return (f"| {r['M']},{r['N']},{r['K']} | {pname} | {r['density']} | {tile} | {_f(r['ours_us'])} | "
            f"{_f(r['cublas_us'])} | {_f(r['speedup_vs_cublas'], 2)}x | {_f(other)} | {_f(r['floor_mem_us'])} / "
            f"{_f(r['floor_flop_us'])} | {r['rel_err']:.1e}{'' if r['ok'] else ' FAIL'} |")


HEADER = ("| M,N,K | pattern | density | tile | ours us | cuBLAS us | speedup | torch sparse us | floors mem/flop us | rel err |\n"
          "|---|---|---|---|---:|---:|---:|---:|---:|---|")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES), help="MxNxK,...")
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--densities", default=",".join(map(str, DENSITIES)))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None)
    ap.add_argument("--sweep", action="store_true", help="also time every tile candidate (block and tile-wise at "
                    "densities 0.1/0.25, 2:4, the unstructured cover at 0.1)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--isolate", action="store_true",
                    help="run each pattern in its own process (a crashing kernel cannot poison the others)")
    a = ap.parse_args(argv)
    if a.isolate and not a.build_only:
        return _isolated(a, argv if argv is not None else sys.argv[1:])
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",") if s]
    cases = plan_cases(shapes, a.patterns.split(","), [float(d) for d in a.densities.split(",")], a.sweep)
    rendered, libs = build_all(cases, a.jobs)
    if a.build_only:
        print(f"built {len(libs)} kernels")
        return 0
    print(HEADER, flush=True)
    meta, results = run(cases, rendered, libs, a.reps, a.json)
    print("\n" + HEADER)
    for r in results:
        print(_row(r))
    print(f"\n{meta}")
    return 0


def _isolated(a, argv):
    import subprocess
    import tempfile
    args = [x for x in argv if x != "--isolate"]
    drop = {"--patterns", "--json"}
    clean, skip = [], False
    for x in args:
        if skip:
            skip = False
            continue
        if x in drop:
            skip = True
            continue
        if any(x.startswith(d + "=") for d in drop):
            continue
        clean.append(x)
    results, meta = [], {}
    for p in a.patterns.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            path = tf.name
        r = subprocess.run([sys.executable, "-m", "sparsify_onnx.bench.kernels", *clean, "--patterns", p,
                            "--json", path])
        try:
            with open(path) as f:
                d = json.load(f)
            results += d["results"]
            meta = d["meta"] if not d["meta"].get("partial") else meta
        except (OSError, ValueError):
            pass
        if r.returncode:
            results.append({"pattern": p, "error": f"child exited {r.returncode}", "M": 0, "N": 0, "K": 0,
                            "density": 0})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    print("\n" + HEADER)
    for r in results:
        print(_row(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
