// sparsify-onnx op layer: the CUDA kernel of ai.sparsify::LayerNormGather (transform/lngather.py).
//   Y[m, j] = (X[m, index[j]] - mean_m) * rstd_m * scale[index[j]] + bias[index[j]]
// Rows of up to 4 x 32 x 16 bytes (H <= 1024 in fp16, 512 in fp32): ln_gather_regs, a warp per row. Up to
// 8 x 128 x 16 bytes: ln_gather_rows, a block of 128 threads per row. Others (and H not a multiple of 16 bytes):
// ln_gather, a warp per row (up to H = 58112, whose fp32 copy fills the 227 KB of shared memory), the row read
// once, 16 bytes at a time where H allows, into the warp's part of shared memory as fp32; mean and variance (two
// passes over shared memory, as LayerNormalization's fp32 stash) by shuffles; the row normalised and scaled in
// place; then written in the index's order, 16 bytes per lane-step (each element one read of shared memory).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "abi.h"

namespace {

constexpr int kWarps = 4;  // rows in flight per block

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

template <typename T>
union Pack {  // 16 bytes of elements
  uint4 u;
  T e[16 / sizeof(T)];
  __device__ Pack() {}
};

template <typename T, bool VEC>
__global__ void __launch_bounds__(kWarps * 32) ln_gather(const T* __restrict__ X, const T* __restrict__ scale,
                                                         const T* __restrict__ bias, const int64_t* __restrict__ index,
                                                         T* __restrict__ Y, int64_t M, int H, float eps) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;  // (fewer for long rows)
  float* row = smem + (size_t)warp * H;
  constexpr int kV = 16 / sizeof(T);  // elements per 16-byte access
  constexpr int per = VEC ? kV : 1;  // consecutive elements per lane-step
  const int step = 32 * per, first = lane * per;
  for (int64_t m = (int64_t)blockIdx.x * warps + warp; m < M; m += (int64_t)gridDim.x * warps) {
    const T* x = X + m * H;
    float sum = 0.f;
    for (int k = first; k < H; k += step) {
      Pack<T> p;
      if (VEC) p.u = __ldg(reinterpret_cast<const uint4*>(x + k));
      else p.e[0] = x[k];
#pragma unroll
      for (int i = 0; i < per; ++i) {
        const float v = to_f(p.e[i]);
        row[k + i] = v;
        sum += v;
      }
    }
    const float mean = warp_sum(sum) / H;  // (each lane reads back only what it wrote: no barrier yet)
    float sq = 0.f;
    for (int k = first; k < H; k += step)
#pragma unroll
      for (int i = 0; i < per; ++i) {
        const float d = row[k + i] - mean;
        sq += d * d;
      }
    const float rstd = rsqrtf(warp_sum(sq) / H + eps);
    for (int k = first; k < H; k += step)  // the row normalised and scaled, still in the input's order
#pragma unroll
      for (int i = 0; i < per; ++i)
        row[k + i] = (row[k + i] - mean) * rstd * to_f(__ldg(scale + k + i)) + to_f(__ldg(bias + k + i));
    __syncwarp();
    T* y = Y + m * H;
    for (int j = first; j < H; j += step) {  // written in the index's order
      Pack<T> p;
#pragma unroll
      for (int i = 0; i < per; ++i) {
        const int64_t k = __ldg(index + j + i);
        p.e[i] = from_f<T>(k >= 0 && k < H ? row[k] : __int_as_float(0x7fc00000));
      }
      if (VEC) *reinterpret_cast<uint4*>(y + j) = p.u;
      else y[j] = p.e[0];
    }
    __syncwarp();  // the row's buffer is reused by this warp's next row
  }
}

// H up to NC chunks of 32 lanes x 16 bytes: the row's loads (X, scale, bias) all issued before any of it is used, the
// row held in registers for the statistics; shared memory only for the reordering. At M = 4096, H = 768 fp16 on the
// H200: 11.2 us against 26.7 for the loop kernel and 10.0 for torch's layer_norm alone (bench/gpu/lngather_kernel.py).
template <typename T, int NC>
__global__ void __launch_bounds__(kWarps * 32) ln_gather_regs(const T* __restrict__ X, const T* __restrict__ scale,
                                                              const T* __restrict__ bias,
                                                              const int64_t* __restrict__ index, T* __restrict__ Y,
                                                              int64_t M, int H, float eps) {
  extern __shared__ float smem[];
  constexpr int kV = 16 / sizeof(T);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* row = smem + (size_t)warp * H;
  for (int64_t m = (int64_t)blockIdx.x * kWarps + warp; m < M; m += (int64_t)gridDim.x * kWarps) {
    const T* x = X + m * H;
    Pack<T> px[NC], ps[NC], pb[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int k = (c * 32 + lane) * kV;
      if (k < H) {
        px[c].u = __ldg(reinterpret_cast<const uint4*>(x + k));
        ps[c].u = __ldg(reinterpret_cast<const uint4*>(scale + k));
        pb[c].u = __ldg(reinterpret_cast<const uint4*>(bias + k));
      }
    }
    float v[NC][kV], sum = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c)
#pragma unroll
      for (int i = 0; i < kV; ++i) {
        v[c][i] = (c * 32 + lane) * kV < H ? to_f(px[c].e[i]) : 0.f;
        sum += v[c][i];
      }
    const float mean = warp_sum(sum) / H;
    float sq = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c)
      if ((c * 32 + lane) * kV < H)
#pragma unroll
        for (int i = 0; i < kV; ++i) sq += (v[c][i] - mean) * (v[c][i] - mean);
    const float rstd = rsqrtf(warp_sum(sq) / H + eps);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int k = (c * 32 + lane) * kV;
      if (k < H)
#pragma unroll
        for (int i = 0; i < kV; ++i) row[k + i] = (v[c][i] - mean) * rstd * to_f(ps[c].e[i]) + to_f(pb[c].e[i]);
    }
    __syncwarp();
    T* y = Y + m * H;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int j = (c * 32 + lane) * kV;
      if (j < H) {
        Pack<T> o;
        longlong2 ixc[kV / 2];  // (loaded here, not with the row: 40 registers fewer, bench/gpu/s14)
#pragma unroll
        for (int i = 0; i < kV / 2; ++i) ixc[i] = __ldg(reinterpret_cast<const longlong2*>(index + j) + i);
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          const int64_t k = (i & 1) ? ixc[i / 2].y : ixc[i / 2].x;
          o.e[i] = from_f<T>(k >= 0 && k < H ? row[k] : __int_as_float(0x7fc00000));
        }
        *reinterpret_cast<uint4*>(y + j) = o.u;
      }
    }
    __syncwarp();  // the row's buffer is reused by this warp's next row
  }
}

// Rows of up to NC chunks of 128 threads x 16 bytes (H <= 8192 in fp16, 4096 in fp32): a block of kRowThreads per
// row, the row's X in registers (scale, bias and index read when used), the statistics reduced across the block's
// warps through shared memory.
constexpr int kRowThreads = 128;

// the sum of v over the block's threads, through part[] (one slot per warp; each call its own part[])
__device__ __forceinline__ float block_sum(float v, float* part) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kRowThreads / 32; ++w) total += part[w];
  return total;
}

template <typename T, int NC>
__global__ void __launch_bounds__(kRowThreads) ln_gather_rows(const T* __restrict__ X, const T* __restrict__ scale,
                                                              const T* __restrict__ bias,
                                                              const int64_t* __restrict__ index, T* __restrict__ Y,
                                                              int64_t M, int H, float eps) {
  extern __shared__ float row[];
  __shared__ float part[2][kRowThreads / 32];
  constexpr int kV = 16 / sizeof(T);
  const int tid = threadIdx.x;
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
    const T* x = X + m * H;
    Pack<T> px[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int k = (c * kRowThreads + tid) * kV;
      if (k < H) px[c].u = __ldg(reinterpret_cast<const uint4*>(x + k));
    }
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c)
      if ((c * kRowThreads + tid) * kV < H)
#pragma unroll
        for (int i = 0; i < kV; ++i) sum += to_f(px[c].e[i]);
    const float mean = block_sum(sum, part[0]) / H;
    float sq = 0.f;
#pragma unroll
    for (int c = 0; c < NC; ++c)
      if ((c * kRowThreads + tid) * kV < H)
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          const float d = to_f(px[c].e[i]) - mean;
          sq += d * d;
        }
    const float rstd = rsqrtf(block_sum(sq, part[1]) / H + eps);
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int k = (c * kRowThreads + tid) * kV;
      if (k < H) {
        Pack<T> ps, pb;
        ps.u = __ldg(reinterpret_cast<const uint4*>(scale + k));
        pb.u = __ldg(reinterpret_cast<const uint4*>(bias + k));
#pragma unroll
        for (int i = 0; i < kV; ++i) row[k + i] = (to_f(px[c].e[i]) - mean) * rstd * to_f(ps.e[i]) + to_f(pb.e[i]);
      }
    }
    __syncthreads();
    T* y = Y + m * H;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int j = (c * kRowThreads + tid) * kV;
      if (j < H) {
        longlong2 ixc[kV / 2];
#pragma unroll
        for (int i = 0; i < kV / 2; ++i) ixc[i] = __ldg(reinterpret_cast<const longlong2*>(index + j) + i);
        Pack<T> o;
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          const int64_t k = (i & 1) ? ixc[i / 2].y : ixc[i / 2].x;
          o.e[i] = from_f<T>(k >= 0 && k < H ? row[k] : __int_as_float(0x7fc00000));
        }
        *reinterpret_cast<uint4*>(y + j) = o.u;
      }
    }
    __syncthreads();  // row[] and part[] are reused by the block's next row
  }
}

template <typename T>
using Kernel = void (*)(const T*, const T*, const T*, const int64_t*, T*, int64_t, int, float);

template <typename T>
int run(Kernel<T> kernel, unsigned grid, int threads, size_t smem, const void* X, const void* scale, const void* bias,
        const int64_t* index, void* Y, int64_t M, int64_t H, float eps, void* stream) {
  if (smem > 48 * 1024 &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
    return 4;
  kernel<<<grid, threads, smem, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const T*>(X), static_cast<const T*>(scale), static_cast<const T*>(bias), index,
      static_cast<T*>(Y), M, (int)H, eps);
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}

// the kernel for rows of H (the comment at the top of this file), the rows each block holds at once and its threads
template <typename T>
Kernel<T> pick(int64_t H, bool vec, int& rows, int& threads) {
  rows = kWarps;
  threads = kWarps * 32;
#ifndef SPARSIFY_LN_LOOP_ONLY  // (defined: the loop kernel for every H, to time one against the other)
  constexpr int kV = 16 / sizeof(T);
  if (vec) {
    switch ((H + 32 * kV - 1) / (32 * kV)) {  // chunks of a warp's 32 lanes x 16 bytes
      case 1: return ln_gather_regs<T, 1>;
      case 2: return ln_gather_regs<T, 2>;
      case 3: return ln_gather_regs<T, 3>;
      case 4: return ln_gather_regs<T, 4>;
      default: break;
    }
    rows = 1;
    threads = kRowThreads;
    switch ((H + kRowThreads * kV - 1) / (kRowThreads * kV)) {  // chunks of a block's 128 threads x 16 bytes
      case 2: return ln_gather_rows<T, 2>;
      case 3: return ln_gather_rows<T, 3>;
      case 4: return ln_gather_rows<T, 4>;
      case 5: return ln_gather_rows<T, 5>;
      case 6: return ln_gather_rows<T, 6>;
      case 7: return ln_gather_rows<T, 7>;
      case 8: return ln_gather_rows<T, 8>;
      default: break;
    }
  }
#endif
  // the loop kernel: a warp per row, as many rows per block as fit in shared memory (up to kWarps)
  const int64_t fit = (int64_t)227 * 1024 / (H * (int64_t)sizeof(float));
  rows = (int)(fit < kWarps ? (fit > 1 ? fit : 1) : kWarps);
  threads = rows * 32;
  return vec ? ln_gather<T, true> : ln_gather<T, false>;
}

template <typename T>
int dispatch(const void* X, const void* scale, const void* bias, const int64_t* index, void* Y, int64_t M, int64_t H,
             float eps, void* stream) {
  if (M <= 0) return 0;
  constexpr int kV = 16 / sizeof(T);
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = H % kV == 0 && aligned(X) && aligned(Y) && aligned(scale) && aligned(bias) && aligned(index);
  int rows = 0, threads = 0;
  Kernel<T> kernel = pick<T>(H, vec, rows, threads);
  const size_t smem = (size_t)rows * H * sizeof(float);
  if (smem > 227 * 1024) return 3;
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t want = (M + rows - 1) / rows, most = (int64_t)(sms > 0 ? sms : 132) * 16;
  return run<T>(kernel, (unsigned)(want < most ? want : most), threads, smem, X, scale, bias, index, Y, M, H, eps,
                stream);
}

}  // namespace

extern "C" int sp_layernorm_gather_cuda(const void* X, const void* scale, const void* bias, const int64_t* index,
                                        void* Y, int64_t M, int64_t H, float eps, int dtype, void* stream) {
  return dtype == SP_FP16 ? dispatch<__half>(X, scale, bias, index, Y, M, H, eps, stream)
                          : dispatch<float>(X, scale, bias, index, Y, M, H, eps, stream);
}
