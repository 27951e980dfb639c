"""A minimal device layer for tuning, benchmarks and GPU tests: buffers, stream, event timing.

Two back ends with one interface: pycuda (the project's optional ``gpu`` dependency; it
uses the device's *primary* context, the one the statically linked CUDA runtime of the
generated launchers uses) and PyTorch (present on GPU hosts; also gives CUDA-graph
timing). ``open_device()`` returns the first that works, or None without a GPU.
"""
from __future__ import annotations

import os
import statistics

import numpy as np


class Buffer:
    def __init__(self, ptr: int, nbytes: int, keep):
        self.ptr, self.nbytes, self._keep = ptr, nbytes, keep


class TorchDevice:
    kind = "torch"

    def __init__(self):
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch
        self.name = torch.cuda.get_device_name(0)
        self.capability = tuple(torch.cuda.get_device_capability(0))  # (major, minor)
        torch.cuda.init()

    def empty(self, nbytes: int) -> Buffer:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device="cuda")
        return Buffer(t.data_ptr(), int(nbytes), t)

    def upload(self, arr: np.ndarray) -> Buffer:
        a = np.ascontiguousarray(arr)
        t = self.torch.from_numpy(a.view(np.uint8).reshape(-1).copy()).cuda()
        return Buffer(t.data_ptr(), a.nbytes, t)

    def download(self, buf: Buffer, shape, dtype) -> np.ndarray:
        self.torch.cuda.synchronize()
        return buf._keep[: int(np.prod(shape)) * np.dtype(dtype).itemsize].cpu().numpy().view(dtype).reshape(shape)

    def fill(self, buf: Buffer, byte: int):
        buf._keep.fill_(byte)

    def stream(self) -> int:
        return self.torch.cuda.current_stream().cuda_stream

    def sync(self):
        self.torch.cuda.synchronize()

    def time(self, fn, reps: int = 20, trials: int = 7, graph: bool = True) -> float:
        """Median seconds per call of ``fn()`` (launches on ``self.stream()``): CUDA-graph replay of
        ``reps`` calls when capture works, else events around a loop of ``reps`` calls."""
        torch = self.torch
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        g = None
        if graph:
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    fn()
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(reps):
                        fn()
                g.replay()
                torch.cuda.synchronize()
            except Exception:
                g = None
                torch.cuda.synchronize()
        self.graphed = g is not None  # (whether the last timing was graph replay; bench/cuda/ab.py reports it)
        out = []
        for _ in range(trials):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            if g is not None:
                g.replay()
            else:
                for _ in range(reps):
                    fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) * 1e-3 / reps)
        return statistics.median(out)


class PycudaDevice:
    kind = "pycuda"

    def __init__(self, index: int | None = None):
        """GPU ``index`` (default: $SPARSIFY_CUDA_DEVICE, else 0); its primary context becomes current."""
        import pycuda.driver as drv
        drv.init()
        self.drv = drv
        dev = drv.Device(int(os.environ.get("SPARSIFY_CUDA_DEVICE", "0")) if index is None else index)
        self.ctx = dev.retain_primary_context()
        self.ctx.push()
        import atexit
        atexit.register(self.close)
        self.name = dev.name()
        self.capability = tuple(dev.compute_capability())  # (major, minor)
        self._stream = drv.Stream()

    def close(self):
        if self.ctx is not None:
            try:
                self.ctx.synchronize()
                self.ctx.pop()
            except Exception:  # noqa: BLE001
                pass
            self.ctx = None

    def empty(self, nbytes: int) -> Buffer:
        m = self.drv.mem_alloc(max(int(nbytes), 1))
        return Buffer(int(m), int(nbytes), m)

    def upload(self, arr: np.ndarray) -> Buffer:
        a = np.ascontiguousarray(arr)
        b = self.empty(a.nbytes)
        self.drv.memcpy_htod(b._keep, a)
        return b

    def download(self, buf: Buffer, shape, dtype) -> np.ndarray:
        self.ctx.synchronize()
        out = np.empty(shape, dtype)
        self.drv.memcpy_dtoh(out, buf._keep)
        return out

    def fill(self, buf: Buffer, byte: int):
        self.drv.memset_d8(buf._keep, byte, max(buf.nbytes, 1))

    def stream(self) -> int:
        return self._stream.handle

    def sync(self):
        self.ctx.synchronize()

    _spin = None

    def _hold(self, seconds: float = 2e-3) -> None:
        """Keep the stream busy for a while (a clock64 spin) so that the launches that follow queue up
        behind it: the events then time back-to-back GPU work, not the host's launch rate (a ctypes
        launch costs ~10 us, longer than a small kernel)."""
        if self._spin is None:
            from pycuda.compiler import SourceModule
            mod = SourceModule("__global__ void sp_spin(long long c){long long t=clock64();"
                               "while(clock64()-t<c){}}", no_extern_c=False)
            self._spin = mod.get_function("sp_spin")
            self._rate = self.drv.Context.get_device().get_attribute(
                self.drv.device_attribute.CLOCK_RATE) * 1e3  # Hz
        self._spin(np.int64(seconds * self._rate), block=(1, 1, 1), grid=(1, 1), stream=self._stream)

    def time(self, fn, reps: int = 20, trials: int = 7, graph: bool = True) -> float:
        for _ in range(3):
            fn()
        self.sync()
        out = []
        for _ in range(trials):
            a, b = self.drv.Event(), self.drv.Event()
            try:
                self._hold()
            except Exception:  # noqa: BLE001  (no nvcc for the spin kernel: host-paced timing)
                pass
            a.record(self._stream)
            for _ in range(reps):
                fn()
            b.record(self._stream)
            b.synchronize()
            out.append(b.time_since(a) * 1e-3 / reps)
        return statistics.median(out)


def open_device(prefer: str | None = None):
    """A device back end, or None when no GPU (or neither pycuda nor torch) is usable."""
    order = [prefer] if prefer else []
    order += [k for k in ("pycuda", "torch") if k not in order]
    for k in order:
        try:
            return PycudaDevice() if k == "pycuda" else TorchDevice()
        except Exception:
            continue
    return None
