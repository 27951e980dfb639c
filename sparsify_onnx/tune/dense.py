"""The dense alternative, timed the same way as our kernels: cuBLAS GEMM through ctypes.

onnxruntime's CUDA EP runs a dense MatMul with cuBLAS; timing cuBLAS on the same device back end
(same stream, same events, same shapes) makes the sparse-or-dense decision a measured one.
fp32 uses TF32 tensor cores, as onnxruntime does by default.
"""
from __future__ import annotations

import ctypes

import numpy as np

CUDA_R_16F, CUDA_R_32F = 2, 0
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 77
CUBLAS_OP_N = 0
CUBLAS_GEMM_DEFAULT = -1

_lib = None


def _cublas():
    global _lib
    if _lib is not None:
        return _lib or None
    try:  # onnxruntime-gpu knows where its CUDA libraries are
        import onnxruntime as ort
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls(cuda=True, cudnn=False)
    except Exception:  # noqa: BLE001
        pass
    for name in ("libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        try:
            _lib = ctypes.CDLL(name)
            return _lib
        except OSError:
            continue
    _lib = False
    return None


class DenseGemm:
    def __init__(self, gpu):
        lib = _cublas()
        if lib is None:
            raise RuntimeError("cuBLAS not found")
        self.lib, self.gpu = lib, gpu
        self.h = ctypes.c_void_p()
        if lib.cublasCreate_v2(ctypes.byref(self.h)):
            raise RuntimeError("cublasCreate failed")
        if lib.cublasSetStream_v2(self.h, ctypes.c_void_p(gpu.stream())):
            raise RuntimeError("cublasSetStream failed")

    def seconds(self, M: int, K: int, N: int, dtype: str, reps: int = 20) -> float:
        npdt = np.float16 if dtype == "fp16" else np.float32
        rng = np.random.default_rng(0)
        X = self.gpu.upload(rng.standard_normal((M, K)).astype(npdt))
        W = self.gpu.upload(rng.standard_normal((K, N)).astype(npdt))
        Y = self.gpu.empty(M * N * np.dtype(npdt).itemsize)
        t = CUDA_R_16F if dtype == "fp16" else CUDA_R_32F
        comp = CUBLAS_COMPUTE_32F if dtype == "fp16" else CUBLAS_COMPUTE_32F_FAST_TF32
        one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
        lib, h = self.lib, self.h

        def call():
            # row-major Y[M,N] = X[M,K] W[K,N]  <=>  column-major Y^T = W^T X^T
            st = lib.cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, ctypes.byref(one),
                                  ctypes.c_void_p(W.ptr), t, N, ctypes.c_void_p(X.ptr), t, K, ctypes.byref(zero),
                                  ctypes.c_void_p(Y.ptr), t, N, comp, CUBLAS_GEMM_DEFAULT)
            if st:
                raise RuntimeError(f"cublasGemmEx status {st}")
        for _ in range(20):  # cuBLAS picks and loads its kernel on first use; clocks ramp up
            call()
        self.gpu.sync()
        return min(self.gpu.time(call, reps) for _ in range(2))


_gemm: dict = {}


def dense_seconds(gpu, M: int, K: int, N: int, dtype: str) -> float | None:
    """Seconds per dense GEMM of this shape on `gpu`, or None when cuBLAS cannot be loaded."""
    try:
        g = _gemm.get(id(gpu))
        if g is None:
            g = _gemm[id(gpu)] = DenseGemm(gpu)
        return g.seconds(M, K, N, dtype)
    except Exception:  # noqa: BLE001  (no cuBLAS: the cost model decides)
        return None

