"""Dense cuBLAS (torch.matmul) and torch's 2:4 (cuSPARSELt) kernel times for the shapes given, same timing
as bench/cuda/lt_probe.cu: CUDA events around 20 back-to-back launches, median of 5 trials.
usage: python bench/cuda/lt_torch.py M,N,K [M,N,K ...]"""
import sys

import torch
from torch.sparse import to_sparse_semi_structured


def time_us(fn):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(20):
            fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1000 / 20)
    return sorted(ts)[2]


print("torch", torch.__version__, "cusparselt", torch.backends.cusparselt.version())
for s in sys.argv[1:]:
    M, N, K = (int(v) for v in s.split(","))
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    w = torch.randn(N, K, device="cuda", dtype=torch.float16)
    mask = torch.tensor([0, 0, 1, 1], device="cuda", dtype=torch.bool).tile(N, K // 4)
    w = w.masked_fill(mask, 0)
    dense = time_us(lambda: torch.matmul(x, w.t()))
    ws = to_sparse_semi_structured(w)
    sp = time_us(lambda: torch.nn.functional.linear(x, ws))
    err = (torch.nn.functional.linear(x, ws).float() - x.float() @ w.float().t()).abs().max().item()
    print(f"M={M} N={N} K={K}: cuBLAS dense {dense:.1f} us, torch 2:4 {sp:.1f} us ({dense / sp:.2f}x), max abs err {err:.2e}")
