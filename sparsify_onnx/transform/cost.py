"""Documented cost model for dense products (used when no GPU tuner is available).

Dense times are roofline estimates: max(flops / rate, bytes / bandwidth) + a
fixed launch overhead. The rates are deliberately those of the vendor libraries
onnxruntime calls (MLAS on CPU, cuBLAS on GPU), measured once on the reference
machines and written down in bench/NOTES.md; kernel families estimate their own
sparse times on the same scale, so the comparison is like for like. On CUDA the dense
alternative to a node also runs, unfused, the element-wise passes of the epilogue our kernel
fuses (``epilogue_seconds``; the tuner adds the same passes to its measured cuBLAS time), and
``dense_node_cost`` is what a sparse node's cost is compared with.
"""
from __future__ import annotations

# CPU: MLAS sgemm on the 2-core AVX-512 dev machine, about 60 GFLOP/s per thread (2 threads).
CPU_DENSE_FLOPS = {"fp32": 110e9}
CPU_BANDWIDTH = 20e9
CPU_OVERHEAD_S = 5e-6
# GPU: cuBLAS on an H200: 709 TFLOP/s at 8192^3 and 30.6 us at 4096x3072x768 (27.6 at 700 TFLOP/s + the 3 us
# overhead) in the same-run baselines of bench/cuda/s4/run8-full-default (600e12 before session 4: ~15% slow).
GPU_DENSE_FLOPS = {"fp16": 700e12, "fp32": 50e12}
GPU_BANDWIDTH = 4.3e12
GPU_OVERHEAD_S = 3e-6


def dense_cost(device: str, M: int, K: int, N: int, dtype: str) -> float:
    flops = 2.0 * M * K * N
    esize = 2 if dtype == "fp16" else 4
    bytes_ = esize * (M * K + K * N + M * N)
    if device == "cuda":
        return max(flops / GPU_DENSE_FLOPS.get(dtype, 50e12), bytes_ / GPU_BANDWIDTH) + GPU_OVERHEAD_S
    return max(flops / CPU_DENSE_FLOPS.get(dtype, 110e9), bytes_ / CPU_BANDWIDTH) + CPU_OVERHEAD_S


# The dense alternative also runs the epilogue that our kernel fuses: onnxruntime executes the bias Add,
# the activation and the residual Add as separate element-wise kernels, each one pass over Y (the
# residual Add reads two tensors). Those passes are memory-bound: modelled as bytes over the H200's
# measured copy bandwidth plus one kernel launch each (KINDS.md / bench/NOTES.md).
ELEMENTWISE_BANDWIDTH = 4.3e12  # bytes/s, device-to-device copy measured on the H200
ELEMENTWISE_LAUNCH_S = 2.5e-6


def epilogue_seconds(M: int, N: int, dtype: str, epilogue) -> float:
    """Seconds of the element-wise passes onnxruntime runs after a dense GEMM for what our kernel fuses."""
    esize = 2 if dtype == "fp16" else 4
    y = M * N * esize
    passes = []
    if epilogue.bias:
        passes.append(2 * y)
    if epilogue.activation != "none":
        passes.append(2 * y)
    if epilogue.residual:
        passes.append(3 * y)
    return sum(b / ELEMENTWISE_BANDWIDTH + ELEMENTWISE_LAUNCH_S for b in passes)


def dense_node_cost(device: str, M: int, K: int, N: int, dtype: str, epilogue) -> float:
    """The dense alternative to a sparse node: the GEMM, and on CUDA the element-wise passes for the epilogue our
    kernel fuses (as the tuner measures it: tune/plan.py adds the same passes to the timed cuBLAS GEMM). On the
    CPU the kernels were measured against MLAS alone, so the CPU side stays the GEMM."""
    t = dense_cost(device, M, K, N, dtype)
    return t + epilogue_seconds(M, N, dtype, epilogue) if device == "cuda" else t
