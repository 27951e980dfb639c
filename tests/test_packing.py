"""codegen/packing.py: every format round-trips and its tables obey the documented layout."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparsify_onnx.codegen.packing import PackError, pack, padded_shape, unpack
from sparsify_onnx.errors import SparsifyError
from sparsify_onnx.pattern import Pattern


def block_weight(rng, K, N, h, w, density=0.3):
    keep = rng.random((-(-K // h), -(-N // w))) < density
    mask = np.kron(keep, np.ones((h, w), bool))[:K, :N]
    W = rng.standard_normal((K, N)).astype(np.float32) * mask
    W[W == 0] = 0.0
    return W


def nm_weight(rng, K, N, n, m, full=True):
    Kp = -(-K // m) * m
    mask = np.zeros((Kp // m, m, N), bool)
    for g in range(Kp // m):
        for j in range(N):
            cnt = n if full else rng.integers(0, n + 1)
            mask[g, rng.permutation(m)[:cnt], j] = True
    mask = mask.reshape(Kp, N)[:K]
    return (rng.standard_normal((K, N)) + 3.0).astype(np.float32) * mask


def tile_weight(rng, K, N, G, density=0.3):
    keep = rng.random((K, -(-N // G))) < density
    mask = np.repeat(keep, G, axis=1)[:, :N]
    return (rng.standard_normal((K, N)) + 3.0).astype(np.float32) * mask


@pytest.mark.parametrize("K,N,h,w", [(64, 64, 32, 32), (70, 45, 16, 8), (33, 100, 32, 32), (5, 7, 4, 1), (1, 1, 2, 2)])
def test_block_roundtrip_and_layout(K, N, h, w):
    rng = np.random.default_rng(K * N)
    W = block_weight(rng, K, N, h, w)
    p = pack(W, Pattern("block", block=(h, w)))
    np.testing.assert_array_equal(unpack(p), W)
    Kp, Np = padded_shape(p.pattern, K, N)
    assert Kp % h == 0 and Np % w == 0 and Kp >= K and Np >= N
    col_ptr, row_idx = p.tables["col_ptr"], p.tables["row_idx"]
    assert col_ptr.dtype == np.int32 and row_idx.dtype == np.int32
    assert len(col_ptr) == Np // w + 1 and col_ptr[0] == 0 and col_ptr[-1] == len(row_idx)
    assert np.all(np.diff(col_ptr) >= 0)
    assert p.values.shape == (len(row_idx), h, w) and p.values.dtype == np.float32
    for j in range(len(col_ptr) - 1):
        rows = row_idx[col_ptr[j]:col_ptr[j + 1]]
        assert np.all(np.diff(rows) > 0)  # ascending, unique
    # a block is stored iff it has a non-zero
    Wp = np.zeros((Kp, Np), np.float32)
    Wp[:K, :N] = W
    nzb = (Wp.reshape(Kp // h, h, Np // w, w) != 0).any(axis=(1, 3))
    assert nzb.sum() == len(row_idx)
    assert p.nnz == len(row_idx) * h * w


def test_block_values_are_row_major_blocks():
    W = np.zeros((4, 4), np.float32)
    W[2:4, 0:2] = [[1, 2], [3, 4]]
    p = pack(W, Pattern("block", block=(2, 2)))
    assert p.tables["col_ptr"].tolist() == [0, 1, 1]
    assert p.tables["row_idx"].tolist() == [1]
    assert p.values.tolist() == [[[1, 2], [3, 4]]]


def test_unstructured_csc():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((37, 23)).astype(np.float32) * (rng.random((37, 23)) < 0.2)
    p = pack(W, Pattern("unstructured"))
    np.testing.assert_array_equal(unpack(p), W)
    cp, ri = p.tables["col_ptr"], p.tables["row_idx"]
    assert len(cp) == 24 and cp[-1] == len(ri) == p.values.size == np.count_nonzero(W) == p.nnz
    j = 5
    rows = ri[cp[j]:cp[j + 1]]
    np.testing.assert_array_equal(rows, np.nonzero(W[:, j])[0])
    np.testing.assert_array_equal(p.values[cp[j]:cp[j + 1]], W[rows, j])


@pytest.mark.parametrize("K,N,n,m,full", [(64, 32, 2, 4, True), (70, 9, 2, 4, False), (30, 5, 1, 8, False),
                                          (16, 3, 4, 16, True)])
def test_nm_roundtrip_and_layout(K, N, n, m, full):
    rng = np.random.default_rng(K + N + n)
    W = nm_weight(rng, K, N, n, m, full)
    p = pack(W, Pattern("nm", n=n, m=m))
    np.testing.assert_array_equal(unpack(p), W)
    Kp = -(-K // m) * m
    idx = p.tables["idx"]
    assert idx.dtype == np.uint8 and idx.shape == (Kp // m * n, N) and p.values.shape == (Kp // m * n, N)
    g = idx.reshape(Kp // m, n, N)
    assert np.all(np.diff(g.astype(int), axis=1) > 0)  # offsets ascending, distinct
    assert int(idx.max()) < m
    assert p.nnz == np.count_nonzero(W)


def test_nm_misfit_is_a_user_error():
    W = np.ones((8, 2), np.float32)
    with pytest.raises(SparsifyError, match="does not fit 2:4"):
        pack(W, Pattern("nm", n=2, m=4))
    with pytest.raises(ValueError):  # PackError is also a ValueError
        pack(W, Pattern("nm", n=2, m=4))
    assert issubclass(PackError, SparsifyError)


@pytest.mark.parametrize("K,N,G", [(40, 64, 16), (33, 50, 8), (10, 3, 4)])
def test_tile_roundtrip_and_layout(K, N, G):
    rng = np.random.default_rng(K * G)
    W = tile_weight(rng, K, N, G)
    p = pack(W, Pattern("tile", granularity=G))
    np.testing.assert_array_equal(unpack(p), W)
    tp, rows = p.tables["tile_ptr"], p.tables["rows"]
    Np = -(-N // G) * G
    assert len(tp) == Np // G + 1 and tp[-1] == len(rows) and p.values.shape == (len(rows), G)
    for t in range(len(tp) - 1):
        r = rows[tp[t]:tp[t + 1]]
        assert np.all(np.diff(r) > 0)
        expect = np.nonzero((W[:, t * G:(t + 1) * G] != 0).any(axis=1))[0]
        np.testing.assert_array_equal(r, expect)


def test_tables_hash_depends_on_pattern_not_values():
    rng = np.random.default_rng(3)
    W = block_weight(rng, 64, 64, 16, 16)
    a = pack(W, Pattern("block", block=(16, 16)))
    b = pack(W * 2.0, Pattern("block", block=(16, 16)))
    assert a.tables_hash() == b.tables_hash()
    W2 = W.copy()
    W2[:16, :16] = 0
    W2[-16:, -16:] = 1
    assert pack(W2, Pattern("block", block=(16, 16))).tables_hash() != a.tables_hash()


def test_all_zero_and_bad_inputs():
    W = np.zeros((10, 6), np.float32)
    p = pack(W, Pattern("block", block=(4, 4)))
    assert p.values.shape == (0, 4, 4) and p.tables["col_ptr"].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(unpack(p), W)
    with pytest.raises(SparsifyError):
        pack(np.ones(3, np.float32), Pattern("unstructured"))


@settings(max_examples=40, deadline=None)
@given(K=st.integers(1, 40), N=st.integers(1, 40), h=st.sampled_from([1, 2, 4, 8]), w=st.sampled_from([1, 4, 16]),
       kind=st.sampled_from(["block", "unstructured", "tile", "nm"]), seed=st.integers(0, 2 ** 16))
def test_roundtrip_property(K, N, h, w, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "block":
        pat, W = Pattern("block", block=(h, w)), block_weight(rng, K, N, h, w)
    elif kind == "unstructured":
        pat, W = Pattern("unstructured"), rng.standard_normal((K, N)).astype(np.float32) * (rng.random((K, N)) < .3)
    elif kind == "tile":
        pat, W = Pattern("tile", granularity=w), tile_weight(rng, K, N, w)
    else:
        pat, W = Pattern("nm", n=min(h, 4), m=4), nm_weight(rng, K, N, min(h, 4), 4, full=False)
    p = pack(W, pat)
    np.testing.assert_array_equal(unpack(p), W)
