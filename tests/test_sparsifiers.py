"""Sparsifiers: achieved density, structure, magnitude keeps the largest; fits; describe_zeros."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsify_onnx.annotate.sparsifiers import describe_zeros, fits, kn_view, matrix_view, prune
from sparsify_onnx.pattern import Pattern


def rand(shape, seed=0, dtype=np.float32):
    # never zero: |x| >= 0.05
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.05, 0.05, x)
    return x.astype(dtype)


def zeros_of(P):
    return int(P.size - np.count_nonzero(P))


# ---------------------------------------------------------------------------- unstructured

@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_unstructured_magnitude(s):
    W = rand((37, 53))
    P = prune(W, Pattern("unstructured"), s)
    assert P.shape == W.shape and P.dtype == W.dtype
    assert abs(zeros_of(P) - s * W.size) <= 1
    kept = P != 0
    assert np.array_equal(P[kept], W[kept])  # kept values untouched
    if 0 < s:
        assert np.abs(W[kept]).min() >= np.abs(W[~kept]).max()  # the largest |w| survive


def test_unstructured_random_is_seeded_and_not_magnitude():
    W = rand((64, 64))
    a = prune(W, Pattern("unstructured"), 0.5, "random", rng=np.random.default_rng(1))
    b = prune(W, Pattern("unstructured"), 0.5, "random", rng=np.random.default_rng(1))
    c = prune(W, Pattern("unstructured"), 0.5, "magnitude")
    assert np.array_equal(a, b)
    assert abs(zeros_of(a) - 0.5 * W.size) <= 1
    assert not np.array_equal(a != 0, c != 0)


def test_prune_does_not_touch_input_and_keeps_dtype():
    W = rand((16, 16), dtype=np.float16)
    W0 = W.copy()
    P = prune(W, Pattern("block", block=(4, 4)), 0.5)
    assert np.array_equal(W, W0) and P.dtype == np.float16


def test_bad_arguments():
    with pytest.raises(ValueError):
        prune(rand((4, 4)), Pattern("unstructured"), 1.0)
    with pytest.raises(ValueError):
        prune(rand((4, 4)), Pattern("unstructured"), 0.5, method="largest")


# ---------------------------------------------------------------------------- block

def block_norms(M, h, w):
    R, C = math.ceil(M.shape[0] / h), math.ceil(M.shape[1] / w)
    out = np.zeros((R, C))
    for i in range(R):
        for j in range(C):
            out[i, j] = np.linalg.norm(M[i * h:(i + 1) * h, j * w:(j + 1) * w].astype(np.float64))
    return out


def check_blocks(W, P, h, w):
    M, Q = matrix_view(W), matrix_view(P)
    R, C = math.ceil(M.shape[0] / h), math.ceil(M.shape[1] / w)
    kept = np.zeros((R, C), dtype=bool)
    for i in range(R):
        for j in range(C):
            q = Q[i * h:(i + 1) * h, j * w:(j + 1) * w]
            m = M[i * h:(i + 1) * h, j * w:(j + 1) * w]
            assert (q == 0).all() or np.array_equal(q, m), "a block is partly pruned"
            kept[i, j] = (q != 0).any()
    return kept


@pytest.mark.parametrize("shape,hw,s", [((64, 64), (16, 16), 0.75), ((70, 50), (16, 8), 0.8),
                                        ((128, 96), (32, 32), 0.9), ((33, 17), (4, 4), 0.5)])
def test_block_magnitude(shape, hw, s):
    W = rand(shape, seed=3)
    P = prune(W, Pattern("block", block=hw), s)
    kept = check_blocks(W, P, *hw)
    assert abs(zeros_of(P) - s * W.size) <= hw[0] * hw[1]  # within one block
    norms = block_norms(W, *hw)
    assert norms[kept].min() >= norms[~kept].max()  # the blocks with the largest norms survive
    assert fits(P, Pattern("block", block=hw)) is None


def test_block_conv_uses_o_by_rest_view():
    W = rand((16, 8, 3, 3))
    P = prune(W, Pattern("block", block=(4, 8)), 0.5, reduction_axis=1)
    check_blocks(W, P, 4, 8)
    assert matrix_view(W).shape == (16, 72)
    assert abs(zeros_of(P) - 0.5 * W.size) <= 32


def test_block_random():
    W = rand((64, 64))
    P = prune(W, Pattern("block", block=(8, 8)), 0.75, "random", rng=np.random.default_rng(0))
    kept = check_blocks(W, P, 8, 8)
    assert kept.sum() == 16


# ---------------------------------------------------------------------------- n:m

@pytest.mark.parametrize("shape,axis,n,m", [((64, 32), 0, 2, 4), ((64, 32), 1, 2, 4), ((32, 48), 0, 1, 4),
                                            ((16, 24), 1, 4, 8), ((8, 16, 3, 3), 1, 2, 4)])
def test_nm_magnitude(shape, axis, n, m):
    W = rand(shape, seed=5)
    P = prune(W, Pattern("nm", n=n, m=m), 1 - n / m, reduction_axis=axis)
    X = np.moveaxis(W, axis, -1)
    Q = np.moveaxis(P, axis, -1)
    g = X.reshape(-1, X.shape[-1] // m, m)
    q = Q.reshape(g.shape)
    assert ((q != 0).sum(-1) == n).all()  # exactly n of every m (no zeros in W)
    # the kept ones are the n largest of their group
    kept_min = np.where(q != 0, np.abs(g), np.inf).min(-1)
    pruned_max = np.where(q == 0, np.abs(g), -np.inf).max(-1)
    assert (kept_min >= pruned_max).all()
    assert np.isclose((P != 0).mean(), n / m)
    assert fits(P, Pattern("nm", n=n, m=m), axis) is None


def test_nm_groups_run_along_reduction_axis_only():
    W = rand((8, 8))
    P = prune(W, Pattern("nm", n=2, m=4), 0.5, reduction_axis=0)
    assert fits(P, Pattern("nm", n=2, m=4), 0) is None
    # along the other axis the groups are not 2:4
    assert fits(P, Pattern("nm", n=2, m=4), 1) is not None


def test_nm_partial_last_group():
    W = rand((10, 3))
    P = prune(W, Pattern("nm", n=2, m=4), 0.5, reduction_axis=0)
    # groups: rows 0-3, 4-7 keep 2 each; rows 8-9 (a group of 2) keep at most 2
    assert ((P[0:4] != 0).sum(0) == 2).all() and ((P[4:8] != 0).sum(0) == 2).all()
    assert fits(P, Pattern("nm", n=2, m=4), 0) is None


def test_nm_random():
    W = rand((32, 8))
    P = prune(W, Pattern("nm", n=1, m=4), 0.75, "random", 0, np.random.default_rng(3))
    assert ((P.reshape(8, 4, 8) != 0).sum(1) == 1).all()


# ---------------------------------------------------------------------------- tile (SC'20)

def tile_units(KN, G):
    K, N = KN.shape
    T = math.ceil(N / G)
    return [[KN[k, t * G:(t + 1) * G] for t in range(T)] for k in range(K)]


@pytest.mark.parametrize("shape,axis,G,s", [((64, 64), 0, 16, 0.75), ((64, 64), 1, 16, 0.5),
                                            ((48, 70), 0, 32, 0.6), ((16, 8, 3, 3), 1, 4, 0.5)])
def test_tile_magnitude(shape, axis, G, s):
    W = rand(shape, seed=7)
    P = prune(W, Pattern("tile", granularity=G), s, reduction_axis=axis)
    A, B = kn_view(W, axis), kn_view(P, axis)
    K, N = A.shape
    T = math.ceil(N / G)
    kept_norm, pruned_norm = [], []
    row_sets = []
    for t in range(T):
        a, b = A[:, t * G:(t + 1) * G], B[:, t * G:(t + 1) * G]
        keep_rows = (b != 0).any(axis=1)
        # within a tile whole K-rows are kept or pruned
        assert np.array_equal(b[keep_rows], a[keep_rows]) and (b[~keep_rows] == 0).all()
        row_sets.append(tuple(np.flatnonzero(keep_rows)))
        norms = np.linalg.norm(a.astype(np.float64), axis=1)
        kept_norm += list(norms[keep_rows])
        pruned_norm += list(norms[~keep_rows])
    assert len(set(row_sets)) > 1, "every tile kept the same rows: that is channel pruning, not tile-wise"
    assert min(kept_norm) >= max(pruned_norm)  # ranked globally
    assert abs(zeros_of(P) - s * W.size) <= G
    assert fits(P, Pattern("tile", granularity=G), axis) is None


def test_tile_transB_layout_groups_columns_of_n():
    # Gemm B with transB=1 is stored [N, K]; the tile's rows are K = axis 1 of the stored tensor
    W = rand((32, 64))  # [N, K]
    P = prune(W, Pattern("tile", granularity=8), 0.5, reduction_axis=1)
    for t in range(4):  # 8 stored rows (= N columns) per tile share one K mask
        block = P[t * 8:(t + 1) * 8] != 0
        assert (block == block[0]).all()


# ---------------------------------------------------------------------------- channel

@pytest.mark.parametrize("shape,axis,s", [((64, 32), 0, 0.5), ((64, 32), 1, 0.25), ((16, 8, 3, 3), 0, 0.5),
                                          ((16, 8, 3, 3), -3, 0.5)])
def test_channel(shape, axis, s):
    W = rand(shape, seed=9)
    P = prune(W, Pattern("channel", axis=axis), s)
    ax = axis % W.ndim
    X = np.moveaxis(W, ax, 0).reshape(W.shape[ax], -1)
    Q = np.moveaxis(P, ax, 0).reshape(W.shape[ax], -1)
    keep = (Q != 0).any(1)
    assert np.array_equal(Q[keep], X[keep]) and (Q[~keep] == 0).all()
    assert abs((~keep).sum() - s * W.shape[ax]) <= 0.5 + 1e-9
    norms = np.linalg.norm(X.astype(np.float64), axis=1)
    assert norms[keep].min() >= norms[~keep].max()
    assert fits(P, Pattern("channel", axis=axis)) is None


# ---------------------------------------------------------------------------- fits

def test_fits_rejects_unstructured_zeros():
    W = prune(rand((64, 64)), Pattern("unstructured"), 0.5)
    for p, ax in [(Pattern("block", block=(8, 8)), 0), (Pattern("nm", n=2, m=4), 0),
                  (Pattern("tile", granularity=16), 0), (Pattern("channel", axis=0), 0)]:
        reason = fits(W, p, ax)
        assert isinstance(reason, str) and reason
    assert fits(W, Pattern("unstructured")) is None
    assert fits(W, Pattern("dense")) is None


def test_fits_dense_weight():
    # a weight without zeros fits only dense: a sparse rule without `sparsity` has nothing to keep
    W = rand((16, 16))
    assert fits(W, Pattern("dense")) is None
    for p in (Pattern("unstructured"), Pattern("block", block=(4, 4)), Pattern("tile", granularity=4),
              Pattern("channel", axis=0)):
        assert "no zeros" in fits(W, p, 0)
    assert "more than 2" in fits(W, Pattern("nm", n=2, m=4), 0)


def test_fits_scattered_zeros_without_a_zero_unit():
    W = rand((16, 16))
    W[::3, ::5] = 0
    assert "none of its" in fits(W, Pattern("block", block=(8, 8)))
    assert fits(W, Pattern("unstructured")) is None


def test_fits_tolerates_a_few_incidental_zeros():
    W = prune(rand((64, 64)), Pattern("block", block=(16, 16)), 0.5)
    W[np.nonzero(W)[0][0], np.nonzero(W)[1][0]] = 0  # one stray zero in a kept block
    assert fits(W, Pattern("block", block=(16, 16))) is None


def test_fits_wrong_block_size():
    W = prune(rand((64, 64)), Pattern("block", block=(8, 8)), 0.5)
    assert fits(W, Pattern("block", block=(8, 8))) is None
    assert fits(W, Pattern("block", block=(32, 32))) is not None


# ---------------------------------------------------------------------------- describe_zeros

def test_describe_dense():
    d = describe_zeros(rand((64, 64)), 0)
    assert d["density"] == 1.0 and d["structure"] == "dense"
    assert not (d["block32x32"] or d["block16x16"] or d["nm2:4"] or d["rows"] or d["cols"])


def test_describe_blocks_nm_rows():
    B = prune(rand((64, 64)), Pattern("block", block=(32, 32)), 0.5)
    d = describe_zeros(B, 0)
    assert d["block32x32"] and d["block16x16"] and d["density"] == 0.5 and "blocks 32x32" in d["structure"]
    N = prune(rand((64, 64)), Pattern("nm", n=2, m=4), 0.5, reduction_axis=0)
    d = describe_zeros(N, 0)
    assert d["nm2:4"] and not d["block16x16"] and d["structure"] == "2:4"
    assert not describe_zeros(N, 1)["nm2:4"]
    R = prune(rand((64, 64)), Pattern("channel", axis=0), 0.25)
    d = describe_zeros(R, 0)
    assert d["rows"] and d["zero_rows"] == 16 and not d["cols"]
    U = prune(rand((64, 64)), Pattern("unstructured"), 0.3)
    assert describe_zeros(U, 0)["structure"] == "unstructured"


# ---------------------------------------------------------------------------- properties

shapes2d = st.tuples(st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=60, deadline=None)
@given(shape=shapes2d, s=st.floats(0, 0.99), seed=st.integers(0, 2**16), random=st.booleans())
def test_prop_unstructured(shape, s, seed, random):
    W = rand(shape, seed)
    P = prune(W, Pattern("unstructured"), s, "random" if random else "magnitude", 0, np.random.default_rng(seed))
    assert abs(zeros_of(P) - s * W.size) <= 1
    assert np.array_equal(P[P != 0], W[P != 0])


@settings(max_examples=60, deadline=None)
@given(shape=shapes2d, h=st.integers(1, 9), w=st.integers(1, 9), s=st.floats(0, 0.99),
       seed=st.integers(0, 2**16), random=st.booleans())
def test_prop_block(shape, h, w, s, seed, random):
    W = rand(shape, seed)
    P = prune(W, Pattern("block", block=(h, w)), s, "random" if random else "magnitude", 0,
              np.random.default_rng(seed))
    check_blocks(W, P, h, w)
    assert abs(zeros_of(P) - s * W.size) <= h * w
    assert zeros_of(P) == 0 or fits(P, Pattern("block", block=(h, w))) is None


@settings(max_examples=60, deadline=None)
@given(shape=shapes2d, nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (4, 8), (3, 5)]), axis=st.integers(0, 1),
       seed=st.integers(0, 2**16), random=st.booleans())
def test_prop_nm(shape, nm, axis, seed, random):
    n, m = nm
    W = rand(shape, seed)
    P = prune(W, Pattern("nm", n=n, m=m), 1 - n / m, "random" if random else "magnitude", axis,
              np.random.default_rng(seed))
    assert fits(P, Pattern("nm", n=n, m=m), axis) is None
    L = W.shape[axis]
    other = W.size // L
    expect = other * ((L // m) * n + min(n, L % m))
    assert np.count_nonzero(P) == expect


@settings(max_examples=60, deadline=None)
@given(shape=shapes2d, G=st.integers(1, 12), axis=st.integers(0, 1), s=st.floats(0, 0.99),
       seed=st.integers(0, 2**16), random=st.booleans())
def test_prop_tile(shape, G, axis, s, seed, random):
    W = rand(shape, seed)
    P = prune(W, Pattern("tile", granularity=G), s, "random" if random else "magnitude", axis,
              np.random.default_rng(seed))
    assert abs(zeros_of(P) - s * W.size) <= G
    B = kn_view(P, axis)
    for t in range(math.ceil(B.shape[1] / G)):
        b = B[:, t * G:(t + 1) * G] != 0
        assert (b.all(axis=1) | ~b.any(axis=1)).all()
    assert zeros_of(P) == 0 or fits(P, Pattern("tile", granularity=G), axis) is None


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), data=st.data(), s=st.floats(0, 0.99),
       seed=st.integers(0, 2**16))
def test_prop_channel(shape, data, s, seed):
    W = rand(tuple(shape), seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    P = prune(W, Pattern("channel", axis=axis), s)
    slice_size = W.size // W.shape[axis]
    assert abs(zeros_of(P) - s * W.size) <= slice_size
    assert zeros_of(P) == 0 or fits(P, Pattern("channel", axis=axis)) is None
