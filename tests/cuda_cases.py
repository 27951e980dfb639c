"""Shared cases for the CUDA kernel tests (compile-only in CI, numeric on a GPU host)."""
from __future__ import annotations

import numpy as np

from sparsify_onnx.codegen.packing import pack, unpack
from sparsify_onnx.codegen.registry import Epilogue, KernelSpec, get_family
from sparsify_onnx.pattern import Pattern

EPI = {
    "plain": Epilogue(),
    "bgr": Epilogue(True, "gelu", True),
    "br": Epilogue(True, "relu", False),
    "ta": Epilogue(False, "gelu_tanh", True),
}


def weight(pattern: Pattern, K: int, N: int, density: float, rng) -> np.ndarray:
    W = rng.standard_normal((K, N)).astype(np.float32) * 0.2
    W[W == 0] = 0.1
    if pattern.kind == "block":
        h, w = pattern.block
        keep = rng.random((-(-K // h), -(-N // w))) < density
        keep.flat[0] = True
        keep[:, -1] = False  # one empty block column: epilogue-only path
        mask = np.kron(keep, np.ones((h, w), bool))[:K, :N]
    elif pattern.kind == "tile":
        G = pattern.granularity
        keep = rng.random((K, -(-N // G))) < density
        keep[0, 0] = True
        mask = np.repeat(keep, G, axis=1)[:, :N]
    elif pattern.kind == "nm":
        r = rng.random((K // pattern.m, pattern.m, N)).argsort(axis=1)
        mask = (r < pattern.n).reshape(K, N)
    elif density == "outlier":  # 2:4 in k's own groups but for one column half dense (an outlier feature of
        mask = natural_24(rng.random((K, N)) < 0.1)  # trained weights: its entries past two crowd one column)
        mask[:, N // 3] = rng.random(K) < 0.5
        mask[K - 4:, N - 1] = True
    elif density in ("natural", "natural-40"):  # unstructured, 2:4 in k's own groups of 4 but for three entries
        mask = natural_24(rng.random((K, N)) < 0.1)  # (the residual), or 40 (a few per k-step, some columns twice)
        extra = [(0, 0), (K - 5, N - 1), (K // 2, N // 2)]
        if density == "natural-40":
            extra += [(int(k), int(n)) for k, n in zip(rng.integers(0, K, 25), rng.integers(0, N, 25))]
            extra += [(k + 8, n) for k, n in extra[3:15]]  # (the same columns in the next groups)
        for k, n in extra:
            mask[k // 4 * 4:k // 4 * 4 + 3, n] = True
    else:
        mask = rng.random((K, N)) < density
        mask[:, 1] = False  # an empty column
    return W * mask


def natural_24(mask: np.ndarray) -> np.ndarray:
    """mask with every non-zero past the first two of each group of 4 consecutive k (per column) dropped."""
    K, N = mask.shape
    g = mask.reshape(K // 4, 4, N)
    return (g & (np.cumsum(g, axis=1) <= 2)).reshape(K, N)


# (family, dtype, pattern, K, N, epilogue key, tile or None[, density: 0.3 if not given, or "natural" (weight())])
CASES = [
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(32, 32)), 136, 200, "bgr", None),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(16, 16)), 96, 64, "plain", None),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(64, 64)), 128, 192, "br", None),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(32, 32)), 128, 256, "ta", (64, 2, 2, 3, 0, 0)),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(32, 64)), 160, 128, "plain", (128, 4, 1, 4, 12, 0)),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(32, 32)), 136, 200, "ta", (32, 4, 1, 4, 0, 3)),
    ("cuda_bcsr_tc", "fp16", Pattern("block", block=(16, 16)), 64, 96, "bgr", (64, 8, 1, 4, 0, 2)),
    ("cuda_bcsr_fp32", "fp32", Pattern("block", block=(32, 32)), 100, 70, "bgr", None),
    ("cuda_bcsr_fp32", "fp16", Pattern("block", block=(16, 16)), 64, 48, "ta", None),
    ("cuda_tile", "fp16", Pattern("tile", granularity=128), 96, 200, "bgr", None),
    ("cuda_tile", "fp16", Pattern("tile", granularity=64), 80, 128, "plain", (64, 16, 2, 2, 3, 8)),
    ("cuda_tile_fp32", "fp32", Pattern("tile", granularity=32), 70, 64, "br", None),
    ("cuda_csr", "fp16", Pattern("unstructured"), 100, 72, "bgr", None),
    ("cuda_csr", "fp32", Pattern("unstructured"), 64, 33, "plain", None),
    ("cuda_nm_sparselt", "fp16", Pattern("nm", n=2, m=4), 128, 64, "plain", None),
    ("cuda_nm_sparselt", "fp16", Pattern("nm", n=2, m=4), 64, 96, "bgr", None),
    # Hopper sparse wgmma, 2:4 (carries cuda_nm_sparselt): partial k-steps, column tiles and m-tiles, raster
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 128, 64, "plain", None),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 200, 136, "bgr", (2, 128, 64, 4, 0, 0)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 264, 520, "ta", (2, 256, 64, 3, 0, 8)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 520, 200, "br", (1, 128, 128, 3, 1, 0)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 96, 72, "bgr", (2, 64, 64, 4, 0, 0)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 1024, 192, "ta", (2, 128, 128, 3, 1, 2)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 136, 200, "bgr", (3, 128, 64, 4, 1, 0)),
    ("cuda_nm_wgmma", "fp16", Pattern("nm", n=2, m=4), 264, 264, "ta", (4, 96, 64, 4, 0, 0)),
    # unstructured on the sparse tensor cores: the pair-permuted 2:4 cover (tile field 7 = 2). At density 0.3 most
    # (tile, panel) cells have no exact pairing and ~7% of the non-zeros go to the residual (in chunks of the
    # buffer's columns); at 0.1 (8th field) none do, and every k-step's pairs are reordered (partial panels:
    # K = 200, 264, 520, 1000). The first case takes the form the cost model chooses; field 7 = 1, the cover in k's
    # own order with a residual of hundreds of entries (random weights, K as given: 0.37% of the groups at 0.1)
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 200, 136, "bgr", None),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 264, 200, "ta", (2, 128, 128, 3, 0, 0, 2)),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 72, "plain", (4, 96, 64, 4, 0, 8, 2)),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 1000, 200, "bgr", (3, 128, 64, 4, 1, 0, 2), 0.1),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 264, "ta", (2, 128, 128, 3, 1, 0, 1), 0.1),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 200, "bgr", (4, 96, 128, 3, 0, 0, 2), 0.1),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 200, 264, "bgr", (4, 96, 64, 4, 0, 0, 1)),
    # the cover in k's own order (a weight 2:4 in natural groups but for three residual entries: X loaded 16 bytes
    # at a time, as after the transform stage's K permutation)
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 200, "bgr", (3, 128, 64, 4, 1, 0), "natural"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 264, 136, "ta", (2, 128, 128, 3, 0, 0), "natural"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 1000, 72, "plain", (4, 96, 64, 4, 0, 8), "natural"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 1000, 200, "bgr", (3, 128, 64, 4, 1, 0, 1), "natural-40"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 264, "ta", (2, 96, 128, 3, 0, 0, 1), "natural-40"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 200, "bgr", (3, 128, 64, 4, 1, 0, 1), "outlier"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 1000, 264, "ta", (4, 96, 128, 3, 0, 0, 1), "outlier"),
    # ... with its residual's chunks of X loaded again in extra k-steps (field 7 = 3): K's last step partial, an
    # outlier column (residual chunks all over K), a random weight in k's own order (most chunks), BM 96 with KS 64
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 520, 200, "bgr", (3, 128, 64, 4, 1, 0, 3), "natural-40"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 1000, 264, "ta", (4, 96, 128, 3, 0, 0, 3), "outlier"),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 264, 136, "plain", (2, 128, 128, 3, 0, 0, 3), 0.1),
    ("cuda_cover_wgmma", "fp16", Pattern("unstructured"), 200, 136, "bgr", (2, 96, 64, 4, 1, 0, 3), "natural"),
    # Hopper wgmma (each source also carries its portable fallback); CI compiles them and a GPU host checks them
    # against numpy: kept rows not a multiple of the k-step, N not a multiple of 128
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 200, 200, "bgr", None),
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 96, 256, "plain", (128, 32, 4, 0)),
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 300, 136, "ta", (256, 64, 3, 1)),
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=64), 136, 200, "br", (128, 32, 4, 1)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 136, 200, "bgr", None),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 96, 64, "ta", (256, 64, 4, 1)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(64, 64)), 128, 192, "plain", (128, 64, 3, 1)),
    # more k-steps than stages, so every slot is refilled several times; kept rows not a multiple of the k-step
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 1024, 256, "bgr", (256, 32, 4, 1)),
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=64), 520, 136, "ta", (128, 64, 3, 1)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 1024, 192, "br", (128, 64, 3, 0)),
    # raster in supertiles of 2 m-tiles (N 520 -> 5 groups)
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 264, 520, "br", (128, 32, 3, 0, 2)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 1024, 192, "ta", (128, 64, 3, 1, 3)),
    # BM 256 (4 warpgroups) at G 64 and 128 (N 200, 136: the last group partly outside N)
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 264, 200, "bgr", (256, 64, 4, 1)),
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=64), 520, 136, "ta", (256, 64, 4, 0)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 1024, 200, "br", (256, 64, 3, 0)),
    # BM 64 (one warpgroup, up to 4 CTAs per SM)
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 264, 200, "bgr", (64, 64, 3, 0)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 136, "ta", (64, 64, 4, 1)),
    # L2 eviction hints (6th field: 7 = values evict_last, Y streamed out, X^T evict_first), with a residual
    ("cuda_tile_wgmma", "fp16", Pattern("tile", granularity=128), 264, 200, "ta", (128, 64, 3, 0, 0, 7)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 136, "br", (128, 32, 4, 1, 0, 3)),
    # 32-wide block columns paired by their shared blocks (group_block_columns): an odd number of block columns
    # (the last one 8 wide, without a partner), bias and residual; and an even number
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 768, 968, "bgr", (128, 64, 3, 0), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 1024, "ta", (64, 64, 4, 1), 0.1),
    # 16-wide block columns grouped in fours by their shared blocks: 61 block columns (the last 8 wide, a last
    # group short of members), with bias, GELU and residual; K not a multiple of the block height; X transposed
    # (k-steps of 32, 13 block columns)
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 768, 968, "bgr", (128, 64, 3, 0), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 520, 1024, "ta", (64, 64, 4, 1), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 1024, 200, "br", (128, 32, 4, 0), 0.1),
    # the TMA form (7th tile field; cuda_bcsr_tma.cu.j2): X by tensor map (rows past M and k past K zero-filled),
    # pre-swizzled B images built on the first call. K not a multiple of 32 with a residual and a group in flight;
    # paired block columns, an odd last one, more k-steps than stages, Y streamed; 64x64 blocks (two k-steps per
    # block row) at BM 64; BM 256 with 2 stages in flight
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 136, "ta", (128, 32, 4, 1, 0, 0, 1)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 768, 968, "bgr", (128, 32, 3, 0, 0, 2, 1), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(64, 64)), 1024, 192, "br", (64, 32, 4, 1, 0, 0, 1)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 1024, 200, "plain", (256, 32, 2, 1, 0, 0, 1)),
    # ... with thread 0 issuing the copies and refilling each slot (TM 2), in flight and not
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 1024, 192, "bgr", (128, 32, 3, 1, 0, 2, 2)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(64, 64)), 520, 136, "ta", (64, 32, 2, 0, 0, 0, 2)),
    # ... persistent (TM 3): each CTA walks several items, the producer running into the next item's steps (the GPU
    # tests cap the grid with SPARSIFY_TMA_GRID), in flight and not, an empty block column
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 968, "bgr", (128, 32, 3, 1, 0, 2, 3), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(64, 64)), 1024, 200, "ta", (64, 32, 2, 0, 0, 0, 3)),
    # ... with 16-row blocks, two per k-step (X in two boxes of 16 k, 32-byte swizzle): 16-wide block columns grouped
    # in fours, a last group short of members, odd entry counts (a step's second half empty); K not a multiple of
    # 16 with thread 0 issuing; persistent with an empty block column; 32x16 blocks (k-steps inside a block)
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 768, 968, "bgr", (128, 32, 4, 1, 0, 2, 1), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 520, 136, "ta", (64, 32, 2, 0, 0, 0, 2)),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 16)), 1024, 200, "br", (128, 32, 3, 1, 0, 2, 3), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 16)), 264, 200, "plain", (128, 32, 4, 0, 0, 0, 1)),
    # ... with Y stored by TMA from staging tiles (LH 8): paired columns and an 8-wide last one (the store clips
    # it); persistent, each CTA storing several items' tiles; 64x64 blocks with thread 0 issuing
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 768, 968, "br", (128, 32, 4, 1, 0, 10, 1), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(32, 32)), 520, 1024, "plain", (128, 32, 3, 1, 0, 8, 3), 0.1),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(64, 64)), 1024, 200, "br", (64, 32, 4, 0, 0, 8, 2)),
    # 16-row blocks two per k-step in wider block columns: 16x32 (pairs) with Y by TMA, 16x64 with thread 0 issuing
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 32)), 520, 200, "br", (128, 32, 4, 1, 0, 10, 1), 0.2),
    ("cuda_bcsr_wgmma", "fp16", Pattern("block", block=(16, 64)), 264, 136, "ta", (64, 32, 2, 0, 0, 0, 2)),
]


def build_case(i: int, seed: int = 0):
    fam_name, dtype, pattern, K, N, epi, tile, *density = CASES[i]
    rng = np.random.default_rng(seed + 17 * i)
    W = weight(pattern, K, N, density[0] if density else 0.3, rng)
    npdt = np.float16 if dtype == "fp16" else np.float32
    W = W.astype(npdt).astype(np.float32)
    pk = pack(W, pattern, dtype=npdt)
    fam = get_family(fam_name)
    spec = KernelSpec("linear", fam_name, "cuda", dtype, pattern, K, N, EPI[epi], tile=tuple(tile or ()),
                      arch=("sm_90",), tables_hash=pk.tables_hash())
    return spec, pk, unpack(pk).astype(np.float64), fam.render(spec, pk)


def reference(X, W, bias, res, epi: Epilogue):
    from math import erf, sqrt
    y = X.astype(np.float64) @ W
    if epi.bias:
        y = y + bias.astype(np.float64)
    if epi.activation == "relu":
        y = np.maximum(y, 0)
    elif epi.activation == "gelu":
        y = 0.5 * y * (1 + np.vectorize(erf)(y / sqrt(2)))
    elif epi.activation == "gelu_tanh":
        y = 0.5 * y * (1 + np.tanh(0.7978845608028654 * (y + 0.044715 * y ** 3)))
    if epi.residual:
        y = y + res.astype(np.float64)
    return y


ACTIVATION_CASES = [(fam, act) for fam in ("cuda_csr", "cuda_nm_wgmma") for act in ("gelu", "gelu_tanh")]


def activation_case(fam: str, act: str, K: int = 256):
    """test_fused_activation_per_element's kernel: W = I [K, K] in fp16 (unstructured for cuda_csr, 2:4 otherwise)
    with ``act`` fused; returns (spec, packed, sources, library name)."""
    pattern = Pattern("unstructured") if fam == "cuda_csr" else Pattern("nm", n=2, m=4)
    pk = pack(np.eye(K, dtype=np.float32), pattern, dtype=np.float16)
    spec = KernelSpec("linear", fam, "cuda", "fp16", pattern, K, K, Epilogue(False, act, False), arch=("sm_90",),
                      tables_hash=pk.tables_hash())
    return spec, pk, get_family(fam).render(spec, pk), f"test_act_{fam}_{act}"
