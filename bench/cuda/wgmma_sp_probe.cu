// Probe for the 2:4 Hopper kernel (cuda_nm_wgmma): which metadata layout and which shared-memory layout of the
// compressed A does `wgmma.mma_async.sp m64n64k32 .f16` read? One warpgroup, one instruction per variant:
//   A (64 x 32 logical, 2:4 along k, compressed to 64 x 16) either MN-major (compressed k rows of 64 m, the
//   layout the packed nm values [K/2, N] already have) or K-major, both 128-byte swizzled;
//   B (32 x 64) K-major (rows of X), 128-byte swizzled, at byte offset 0 or 64 of its 128-byte rows (the k32
//   steps inside one swizzle atom);
//   metadata: variant 0 = per thread t of the warpgroup, rows r = 16 * (t / 32) + (t % 32) / 4 and r + 8, logical
//   k 16 * (t % 2) .. +16: bits 0-15 row r (4 bits per group of 4, the two kept offsets, first in the low 2 bits),
//   bits 16-31 row r + 8 (CuTe's ELayout_64x32); variant 1 = lane % 4 == 0: row r all 32 k, lane % 4 == 1: row
//   r + 8; variant 2 = bytes interleaved (row r k 0-7, row r + 8 k 0-7, row r k 8-15, row r + 8 k 8-15).
// Every variant is compared with the fp32 product of the decompressed A; the kernel uses the one that matches.
// Build: nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -cudart static bench/cuda/wgmma_sp_probe.cu -o wgmma_sp_probe
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)

__device__ __forceinline__ uint64_t desc128(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
         ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

template <int TA>
__device__ __forceinline__ void wgmma_sp(float* d, uint64_t da, uint64_t db, uint32_t meta) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sp.sync.aligned.m64n64k32.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, %34, 0, 0, 1, 1, %35, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(meta), "n"(TA));
}

// Ac [64][16] compressed A (row m: the 16 kept values in k order), B [64 n][32 k], meta [128] per-thread words
__global__ void probe(const __half* Ac, const __half* B, const uint32_t* meta, float* D, int amode, int boff) {
  __shared__ __align__(1024) unsigned char sm[8192 * 2];
  const uint32_t base = (uint32_t)__cvta_generic_to_shared(sm), sa = base, sb = base + 8192;
  const int t = threadIdx.x;
  for (int i = t; i < 16384 / 4; i += 128) reinterpret_cast<uint32_t*>(sm)[i] = 0;
  __syncthreads();
  // A: element (m, j) of the compressed 64 x 16
  for (int e = t; e < 64 * 16; e += 128) {
    const int m = e / 16, j = e % 16;
    int off;
    if (amode == 0) {  // MN-major: row j (compressed k) of 128 bytes = 64 m; 16-byte chunk m / 8 at (m/8) ^ (j%8)
      off = j * 128 + ((((m / 8) ^ (j % 8))) << 4) + (m % 8) * 2;
    } else {  // K-major: row m of 128 bytes, compressed k j at chunk j / 8 ^ (m % 8)
      off = m * 128 + ((((j / 8) ^ (m % 8))) << 4) + (j % 8) * 2;
    }
    *reinterpret_cast<__half*>(sm + off) = Ac[e];
  }
  // B: element (k, n), K-major: row n of 128 bytes, k at byte boff + 2k, chunk swizzled with n % 8
  for (int e = t; e < 64 * 32; e += 128) {
    const int n = e / 32, k = e % 32, byte = boff + 2 * k;
    const int off = n * 128 + ((((byte / 16) ^ (n % 8))) << 4) + byte % 16;
    *reinterpret_cast<__half*>(sm + 8192 + off) = B[e];
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  const uint64_t da = amode == 0 ? desc128(sa, 8192, 1024) : desc128(sa, 16, 1024);
  const uint64_t db = desc128(sb + boff, 16, 1024);
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  if (amode == 0) wgmma_sp<1>(d, da, db, meta[t]); else wgmma_sp<0>(d, da, db, meta[t]);
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(d[i])::"memory");
  const int w = t / 32, g = (t % 32) / 4, q = t % 4;
  for (int j = 0; j < 8; ++j)
    for (int h = 0; h < 2; ++h) {
      const int r = w * 16 + g + 8 * h, c = 8 * j + 2 * q;
      D[r * 64 + c] = d[4 * j + 2 * h];
      D[r * 64 + c + 1] = d[4 * j + 2 * h + 1];
    }
}

int main() {
  srand(7);
  std::vector<int> idx(64 * 8 * 2);  // [m][group][2] kept offsets, ascending, distinct
  std::vector<float> Afull(64 * 32, 0.f), Bf(32 * 64);
  std::vector<__half> Ac(64 * 16), Bh(64 * 32);
  for (int m = 0; m < 64; ++m)
    for (int gr = 0; gr < 8; ++gr) {
      int a = rand() % 4, b = rand() % 3;
      if (b >= a) ++b;
      if (a > b) { int x = a; a = b; b = x; }
      idx[(m * 8 + gr) * 2] = a; idx[(m * 8 + gr) * 2 + 1] = b;
      for (int s = 0; s < 2; ++s) {
        const float v = (float)(rand() % 9 - 4);
        Afull[m * 32 + gr * 4 + (s ? b : a)] = v;
        Ac[m * 16 + gr * 2 + s] = __float2half(v);
      }
    }
  for (int n = 0; n < 64; ++n)
    for (int k = 0; k < 32; ++k) {
      const float v = (float)(rand() % 7 - 3);
      Bf[k * 64 + n] = v;
      Bh[n * 32 + k] = __float2half(v);
    }
  std::vector<float> ref(64 * 64, 0.f);
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n)
      for (int k = 0; k < 32; ++k) ref[m * 64 + n] += Afull[m * 32 + k] * Bf[k * 64 + n];
  auto nib = [&](int m, int gr) { return (uint32_t)(idx[(m * 8 + gr) * 2] | (idx[(m * 8 + gr) * 2 + 1] << 2)); };
  auto row16 = [&](int m, int g0) {  // 4 groups from g0, 4 bits each
    uint32_t v = 0;
    for (int c = 0; c < 4; ++c) v |= nib(m, g0 + c) << (4 * c);
    return v;
  };
  __half *dA, *dB;
  uint32_t* dM;
  float* dD;
  CK(cudaMalloc(&dA, Ac.size() * 2)); CK(cudaMalloc(&dB, Bh.size() * 2));
  CK(cudaMalloc(&dM, 128 * 4)); CK(cudaMalloc(&dD, 64 * 64 * 4));
  CK(cudaMemcpy(dA, Ac.data(), Ac.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dB, Bh.data(), Bh.size() * 2, cudaMemcpyHostToDevice));
  const char* vname[] = {"cute-ELayout", "lane-per-row", "byte-interleaved"};
  for (int variant = 0; variant < 3; ++variant)
    for (int amode = 0; amode < 2; ++amode)
      for (int boff = 0; boff <= 64; boff += 64) {
        std::vector<uint32_t> meta(128);
        for (int t = 0; t < 128; ++t) {
          const int r = 16 * (t / 32) + (t % 32) / 4, q = t % 4;
          uint32_t w = 0;
          if (variant == 0) {
            const int h = q % 2;
            w = row16(r, 4 * h) | (row16(r + 8, 4 * h) << 16);
          } else if (variant == 1) {
            const int rr = (q % 2) ? r + 8 : r;
            w = row16(rr, 0) | (row16(rr, 4) << 16);
          } else {
            const int h = q % 2;
            const uint32_t lo = row16(r, 4 * h), hi = row16(r + 8, 4 * h);
            w = (lo & 0xFF) | ((hi & 0xFF) << 8) | ((lo >> 8) << 16) | ((hi >> 8) << 24);
          }
          meta[t] = w;
        }
        CK(cudaMemcpy(dM, meta.data(), 128 * 4, cudaMemcpyHostToDevice));
        CK(cudaMemset(dD, 0xFF, 64 * 64 * 4));
        probe<<<1, 128>>>(dA, dB, dM, dD, amode, boff);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        std::vector<float> D(64 * 64);
        CK(cudaMemcpy(D.data(), dD, D.size() * 4, cudaMemcpyDeviceToHost));
        double maxerr = 0;
        int bad = 0;
        for (int i = 0; i < 64 * 64; ++i) {
          const double e = fabs((double)D[i] - ref[i]);
          if (!(e <= 1e-3)) ++bad;
          if (e > maxerr || e != e) maxerr = e;
        }
        printf("metadata %-16s A %-8s B offset %2d: %s (%d of 4096 wrong, max err %.3g)\n", vname[variant],
               amode == 0 ? "MN-major" : "K-major", boff, bad == 0 ? "CORRECT" : "wrong", bad, maxerr);
      }
  return 0;
}
