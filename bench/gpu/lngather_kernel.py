"""ai.sparsify::LayerNormGather's CUDA launcher timed alone (CUDA events over launches captured in a CUDA graph,
torch for memory and the baseline): the library's kernels (a warp per row for H <= 1024 in fp16, a block of 128
threads per row up to 8192, the loop kernel beyond) and the loop kernel alone (-DSPARSIFY_LN_LOOP_ONLY), against
torch's layer_norm and layer_norm + index_select, fp16, on the same tensors; outputs checked against torch.

    nvcc -std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Xcompiler -fPIC -shared -cudart static \
        [-DSPARSIFY_LN_LOOP_ONLY] -I sparsify_onnx/custom_ops sparsify_onnx/custom_ops/layernorm_gather.cu \
        -o .devbuild/ln/libln_{final,loop}.so          (on the dev machine)
    python3 bench/gpu/lngather_kernel.py .devbuild/ln/libln_final.so .devbuild/ln/libln_loop.so   (GPU host)
"""
import ctypes
import sys

import torch


def timed(fn, reps=50):
    """us per call: `reps` calls captured in one CUDA graph (no launch cost on the host), best of 5 replays x 4."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(5):
        a.record()
        for _ in range(4):
            g.replay()
        b.record()
        torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) * 1e3 / (4 * reps))
    return best


def main(libs):
    fns = {}
    for path in libs:
        lib = ctypes.CDLL(path)
        f = lib.sp_layernorm_gather_cuda
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_int,
                                              ctypes.c_void_p]
        fns[path.rsplit("/", 1)[-1]] = f
    for M, H in ((4096, 768), (4096, 1024), (4096, 2048), (4096, 3072), (4096, 4096), (4096, 8192), (128, 768),
                 (512, 8200), (512, 20000)):  # (the loop kernel: 4 rows per block, then 2 for rows past 56 KB)
        g = torch.Generator(device="cuda").manual_seed(0)
        X = torch.randn(M, H, device="cuda", generator=g).half()
        s = (1 + 0.1 * torch.randn(H, device="cuda", generator=g)).half()
        b = (0.1 * torch.randn(H, device="cuda", generator=g)).half()
        idx = torch.randperm(H, device="cuda", generator=g)
        Y = torch.empty_like(X)
        want = torch.nn.functional.layer_norm(X.float(), (H,), s.float(), b.float(), 1e-5)[:, idx]
        line = [f"M={M} H={H}:"]
        for name, f in fns.items():
            call = lambda: f(X.data_ptr(), s.data_ptr(), b.data_ptr(), idx.data_ptr(), Y.data_ptr(), M, H, 1e-5, 1,
                             torch.cuda.current_stream().cuda_stream)
            Y.fill_(float("nan"))
            assert call() == 0
            torch.cuda.synchronize()
            err = ((Y.float() - want).abs().max() / want.abs().max()).item()
            line.append(f"{name} {timed(call):.2f} us (err {err:.1e})")
        line.append(f"torch layer_norm {timed(lambda: torch.nn.functional.layer_norm(X, (H,), s, b, 1e-5)):.2f} us")
        line.append("torch layer_norm+index_select "
                    f"{timed(lambda: torch.nn.functional.layer_norm(X, (H,), s, b, 1e-5).index_select(1, idx)):.2f} us")
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
