// sparsify-onnx op layer: the CUDA kernel of ai.sparsify::LayerNormGather (transform/lngather.py).
//   Y[m, j] = (X[m, index[j]] - mean_m) * rstd_m * scale[index[j]] + bias[index[j]]
// One warp per row (rows strided over the grid): the row is read once, 16 bytes at a time where it is aligned,
// into the warp's part of shared memory as fp32; mean and variance (two passes over shared memory, as
// LayerNormalization's fp32 stash) by shuffles; then written in the index's order, two elements per lane-step.
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
__global__ void __launch_bounds__(kWarps * 32) ln_gather(const T* __restrict__ X, const T* __restrict__ scale,
                                                         const T* __restrict__ bias, const int64_t* __restrict__ index,
                                                         T* __restrict__ Y, int64_t M, int H, float eps, int vec) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* row = smem + (size_t)warp * H;
  constexpr int kV = 16 / sizeof(T);  // elements per 16-byte load
  for (int64_t m = (int64_t)blockIdx.x * kWarps + warp; m < M; m += (int64_t)gridDim.x * kWarps) {
    const T* x = X + m * H;
    float sum = 0.f;
    if (vec) {
      for (int k = lane * kV; k < H; k += 32 * kV) {
        uint4 u = __ldg(reinterpret_cast<const uint4*>(x + k));
        const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          float v = to_f(e[i]);
          row[k + i] = v;
          sum += v;
        }
      }
    } else {
      for (int k = lane; k < H; k += 32) {
        float v = to_f(x[k]);
        row[k] = v;
        sum += v;
      }
    }
    const float mean = warp_sum(sum) / H;  // (each lane reads back only what it wrote: no barrier yet)
    float sq = 0.f;
    if (vec) {
      for (int k = lane * kV; k < H; k += 32 * kV)
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          float d = row[k + i] - mean;
          sq += d * d;
        }
    } else {
      for (int k = lane; k < H; k += 32) {
        float d = row[k] - mean;
        sq += d * d;
      }
    }
    const float rstd = rsqrtf(warp_sum(sq) / H + eps);
    __syncwarp();
    T* y = Y + m * H;
    for (int j = lane; j < H; j += 32) {
      const int64_t k = __ldg(index + j);
      y[j] = from_f<T>(k >= 0 && k < H ? (row[k] - mean) * rstd * to_f(scale[k]) + to_f(bias[k]) : __int_as_float(0x7fc00000));
    }
    __syncwarp();  // the row's buffer is reused by this warp's next row
  }
}

template <typename T>
int launch(const void* X, const void* scale, const void* bias, const int64_t* index, void* Y, int64_t M, int64_t H,
           float eps, void* stream) {
  if (M <= 0) return 0;
  const size_t smem = (size_t)kWarps * H * sizeof(float);
  if (smem > 48 * 1024) {
    if (smem > 227 * 1024) return 3;
    if (cudaFuncSetAttribute(ln_gather<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
      return 4;
  }
  const int vec = (H % (16 / sizeof(T)) == 0 && reinterpret_cast<uintptr_t>(X) % 16 == 0) ? 1 : 0;
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t want = (M + kWarps - 1) / kWarps, most = (int64_t)(sms > 0 ? sms : 132) * 16;
  const unsigned grid = (unsigned)(want < most ? want : most);
  ln_gather<T><<<grid, kWarps * 32, smem, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const T*>(X), static_cast<const T*>(scale), static_cast<const T*>(bias), index,
      static_cast<T*>(Y), M, (int)H, eps, vec);
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}

}  // namespace

extern "C" int sp_layernorm_gather_cuda(const void* X, const void* scale, const void* bias, const int64_t* index,
                                        void* Y, int64_t M, int64_t H, float eps, int dtype, void* stream) {
  return dtype == SP_FP16 ? launch<__half>(X, scale, bias, index, Y, M, H, eps, stream)
                          : launch<float>(X, scale, bias, index, Y, M, H, eps, stream);
}
