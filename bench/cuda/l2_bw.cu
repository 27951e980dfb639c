// Bandwidth probe (H200): how fast the SMs read a buffer that stays in L2 (sizes below the 50 MB L2) or comes
// from DRAM (larger), with 16-byte loads from every SM, and how fast they write an output of the size of Y at
// (4096, 3072) fp16. The block-sparse bars' bounds in bench/NOTES.md use these rates.
// build: nvcc -O3 -gencode arch=compute_90a,code=sm_90a -cudart static -o l2_bw bench/cuda/l2_bw.cu
#include <cstdio>
#include <cuda_runtime.h>

__global__ void rd(const uint4* __restrict__ p, size_t n, int reps, uint4* sink) {
  uint4 acc = {0, 0, 0, 0};
  for (int r = 0; r < reps; ++r)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
      uint4 v;
      asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p + i));
      acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
    }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x12345678u) sink[0] = acc;  // (keeps the loads)
}
__global__ void wr(uint4* __restrict__ p, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = make_uint4(i, i, i, i);
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t big = (size_t)4 << 30;
  uint4 *buf, *sink;
  cudaMalloc(&buf, big);
  cudaMalloc(&sink, 64);
  cudaMemset(buf, 1, big);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  const size_t sizes[] = {(size_t)8 << 20, (size_t)16 << 20, (size_t)24 << 20, (size_t)32 << 20, (size_t)1 << 30, big};
  for (size_t bytes : sizes) {
    const size_t n = bytes / 16;
    const int reps = bytes <= ((size_t)32 << 20) ? 50 : 2;
    for (int blocks : {sms * 4, sms * 8}) {
      rd<<<blocks, 512>>>(buf, n, 1, sink);  // warm
      cudaEventRecord(a);
      rd<<<blocks, 512>>>(buf, n, reps, sink);
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      printf("read  %7.1f MB x %2d, %4d CTAs x 512: %6.2f TB/s\n", bytes / 1e6, reps, blocks, bytes * (double)reps / (ms * 1e-3) / 1e12);
    }
  }
  const size_t ybytes = (size_t)4096 * 3072 * 2;  // Y at (4096, 3072), fp16
  // over 8 different Y buffers, then the same Y each launch (as a benchmark that replays one kernel does)
  for (int nbuf : {8, 1})
    for (int it = 0; it < 3; ++it) {
      cudaEventRecord(a);
      for (int r = 0; r < 20; ++r) wr<<<sms * 8, 512>>>(buf + (r % nbuf) * (ybytes / 16), ybytes / 16);
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      printf("write %7.1f MB (Y at 4096x3072 fp16), 20 launches over %d buffer(s): %6.2f us each, %5.2f TB/s\n",
             ybytes / 1e6, nbuf, ms * 1e3 / 20, ybytes * 20.0 / (ms * 1e-3) / 1e12);
    }
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}
