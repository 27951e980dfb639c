// Probe: which cuSPARSELt descriptor set-up, algorithm id and split-k run 2:4 fp16 fastest on this GPU.
// Y[M,N] = X[M,K] @ W^T, W[N,K] 2:4 along K. Every configuration is checked against a direct dot product
// on 4096 sampled outputs. Timing: CUDA events around 20 back-to-back launches, median of 5 trials.
// Build (dev machine, header + lib from the nvidia-cusparselt-cu13 wheel):
//   nvcc -O2 -gencode arch=compute_90,code=sm_90 -cudart static -I$LT/include bench/cuda/lt_probe.cu \
//        -L$LT/lib -l:libcusparseLt.so.0 -o lt_probe
// Run: LD_LIBRARY_PATH=<dir of libcusparseLt.so.0> ./lt_probe M N K [max_alg_ids]
#include <cuda_fp16.h>
#include <cusparseLt.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)
static int lt_ok(cusparseStatus_t s, const char* what) {
  if (s != CUSPARSE_STATUS_SUCCESS) printf("  %s -> status %d\n", what, (int)s);
  return s == CUSPARSE_STATUS_SUCCESS;
}
#define LT(x) lt_ok((x), #x)

__global__ void ref_dot(const __half* X, const __half* W, const __half* Y, const int* mi, const int* ni, int K, int N,
                        float* err, float* mag, int S) {
  int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= S) return;
  int m = mi[s], n = ni[s];
  float acc = 0.f;
  for (int k = 0; k < K; ++k) acc += __half2float(X[(size_t)m * K + k]) * __half2float(W[(size_t)n * K + k]);
  err[s] = fabsf(__half2float(Y[(size_t)m * N + n]) - acc);
  mag[s] = fabsf(acc);
}

__global__ void transpose_nk(const __half* W, __half* WT, int N, int K) {  // WT[K,N] = W[N,K]^T
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)N * K) return;
  size_t n = i / K, k = i % K;
  WT[k * N + n] = W[i];
}

struct Cfg { const char* name; cusparseOrder_t oa; cusparseOperation_t opa; cusparseOrder_t ob; cusparseOperation_t opb; };

int main(int argc, char** argv) {
  if (argc < 4) { printf("usage: lt_probe M N K [max_alg_ids]\n"); return 2; }
  long M = atol(argv[1]), N = atol(argv[2]), K = atol(argv[3]);
  int max_ids = argc > 4 ? atoi(argv[4]) : 64;
  int ver = 0;
  cusparseLtHandle_t h;
  if (!LT(cusparseLtInit(&h))) return 1;
  cusparseLtGetVersion(&h, &ver);
  printf("cuSPARSELt version %d, shape M=%ld N=%ld K=%ld\n", ver, M, N, K);

  std::vector<__half> hX((size_t)M * K), hW((size_t)N * K);
  unsigned long long r = 88172645463325252ull;
  auto rnd = [&]() { r ^= r << 13; r ^= r >> 7; r ^= r << 17; return r; };
  for (auto& v : hX) v = __float2half(((rnd() % 2001) / 1000.f - 1.f));
  for (long n = 0; n < N; ++n)
    for (long g = 0; g < K / 4; ++g) {
      int a = rnd() % 4, b = (a + 1 + rnd() % 3) % 4;
      for (int j = 0; j < 4; ++j)
        hW[n * K + g * 4 + j] = (j == a || j == b) ? __float2half(((rnd() % 2001) / 1000.f - 1.f)) : __float2half(0.f);
    }
  __half *X, *W, *WT, *Y;
  CK(cudaMalloc(&X, hX.size() * 2)); CK(cudaMalloc(&W, hW.size() * 2)); CK(cudaMalloc(&WT, hW.size() * 2));
  CK(cudaMalloc(&Y, (size_t)M * N * 2));
  CK(cudaMemcpy(X, hX.data(), hX.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(W, hW.data(), hW.size() * 2, cudaMemcpyHostToDevice));
  transpose_nk<<<(unsigned)((N * K + 255) / 256), 256>>>(W, WT, (int)N, (int)K);
  const int S = 4096;
  std::vector<int> hm(S), hn(S);
  for (int s = 0; s < S; ++s) { hm[s] = rnd() % M; hn[s] = rnd() % N; }
  int *dm, *dn; float *derr, *dmag;
  CK(cudaMalloc(&dm, S * 4)); CK(cudaMalloc(&dn, S * 4)); CK(cudaMalloc(&derr, S * 4)); CK(cudaMalloc(&dmag, S * 4));
  CK(cudaMemcpy(dm, hm.data(), S * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(dn, hn.data(), S * 4, cudaMemcpyHostToDevice));
  cudaStream_t st; CK(cudaStreamCreate(&st));
  cudaEvent_t e0, e1; CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));

  // C = D = Y^T as N x M column-major (== Y[M,N] row-major) in every configuration.
  // A is the sparse weight as N x K (op N): ROW order reads W[N,K] (K contiguous), COL order reads WT[K,N].
  // B is X^T as K x M: COL order (ld K) op N, or X as M x K ROW order op T (same memory).
  Cfg cfgs[] = {
      {"A=col(WT) B=col opN   [ours, session 1]", CUSPARSE_ORDER_COL, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_ORDER_COL, CUSPARSE_OPERATION_NON_TRANSPOSE},
      {"A=row(W)  B=row opT   [torch]", CUSPARSE_ORDER_ROW, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_ORDER_ROW, CUSPARSE_OPERATION_TRANSPOSE},
      {"A=row(W)  B=col opN", CUSPARSE_ORDER_ROW, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_ORDER_COL, CUSPARSE_OPERATION_NON_TRANSPOSE},
      {"A=col(W) opT B=col opN", CUSPARSE_ORDER_COL, CUSPARSE_OPERATION_TRANSPOSE, CUSPARSE_ORDER_COL, CUSPARSE_OPERATION_NON_TRANSPOSE},
  };
  float alpha = 1.f, beta = 0.f;
  void* ws = nullptr; size_t ws_bytes = 0;
  for (const Cfg& c : cfgs) {
    printf("config %s\n", c.name);
    cusparseLtMatDescriptor_t mA, mB, mC;
    const __half* Wsrc;
    int64_t ar, ac, ald;
    if (c.opa == CUSPARSE_OPERATION_NON_TRANSPOSE) {
      ar = N; ac = K;
      if (c.oa == CUSPARSE_ORDER_ROW) { ald = K; Wsrc = W; } else { ald = N; Wsrc = WT; }
    } else {  // op T: stored as K x N; COL order, ld K reads W[N,K]
      ar = K; ac = N; ald = K; Wsrc = W;
    }
    if (!LT(cusparseLtStructuredDescriptorInit(&h, &mA, ar, ac, ald, 16, CUDA_R_16F, c.oa, CUSPARSELT_SPARSITY_50_PERCENT))) continue;
    if (c.ob == CUSPARSE_ORDER_COL) { if (!LT(cusparseLtDenseDescriptorInit(&h, &mB, K, M, K, 16, CUDA_R_16F, CUSPARSE_ORDER_COL))) continue; }
    else { if (!LT(cusparseLtDenseDescriptorInit(&h, &mB, M, K, K, 16, CUDA_R_16F, CUSPARSE_ORDER_ROW))) continue; }
    if (!LT(cusparseLtDenseDescriptorInit(&h, &mC, N, M, N, 16, CUDA_R_16F, CUSPARSE_ORDER_COL))) continue;
    cusparseLtMatmulDescriptor_t mm;
    if (!LT(cusparseLtMatmulDescriptorInit(&h, &mm, c.opa, c.opb, &mA, &mB, &mC, &mC, CUSPARSE_COMPUTE_32F))) continue;
    size_t csize = 0, cbuf = 0;
    if (!LT(cusparseLtSpMMACompressedSize2(&h, &mA, &csize, &cbuf))) continue;
    void *comp, *cb = nullptr;
    CK(cudaMalloc(&comp, csize)); if (cbuf) CK(cudaMalloc(&cb, cbuf));
    if (!LT(cusparseLtSpMMACompress2(&h, &mA, 1, c.opa, Wsrc, comp, cb, st))) continue;
    CK(cudaStreamSynchronize(st));
    cusparseLtMatmulAlgSelection_t alg;
    if (!LT(cusparseLtMatmulAlgSelectionInit(&h, &alg, &mm, CUSPARSELT_MATMUL_ALG_DEFAULT))) continue;
    int maxid = -1;
    cusparseLtMatmulAlgGetAttribute(&h, &alg, CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID, &maxid, sizeof(maxid));
    printf("  alg config max id %d\n", maxid);
    float best = 1e30f; int best_id = -1, best_sk = 0;
    // (id, split_k) pairs: id -1 = library default; then every id with split-k default; then split-k 2,4 on id 0
    std::vector<std::pair<int, int>> trials = {{-1, 0}};
    for (int id = 0; id <= std::min(maxid, max_ids - 1); ++id) trials.push_back({id, 0});
    for (int sk : {2, 4, 8}) trials.push_back({-2, sk});  // -2 = default id, given split-k
    if (getenv("LT_SEARCH")) trials.push_back({-3, 0});    // cusparseLtMatmulSearch (crashes on ids past 33 here)
    for (auto [id, sk] : trials) {
      cusparseLtMatmulAlgSelection_t a2;
      if (!LT(cusparseLtMatmulAlgSelectionInit(&h, &a2, &mm, CUSPARSELT_MATMUL_ALG_DEFAULT))) continue;
      if (id >= 0 && !LT(cusparseLtMatmulAlgSetAttribute(&h, &a2, CUSPARSELT_MATMUL_ALG_CONFIG_ID, &id, sizeof(id)))) continue;
      if (sk > 0 && !LT(cusparseLtMatmulAlgSetAttribute(&h, &a2, CUSPARSELT_MATMUL_SPLIT_K, &sk, sizeof(sk)))) continue;
      cusparseLtMatmulPlan_t plan;
      if (!LT(cusparseLtMatmulPlanInit(&h, &plan, &mm, &a2))) continue;
      size_t w = 0;
      cusparseLtMatmulGetWorkspace(&h, &plan, &w);
      if (w > ws_bytes) { if (ws) cudaFree(ws); CK(cudaMalloc(&ws, w)); ws_bytes = w; }
      if (id == -3) {
        if (!LT(cusparseLtMatmulSearch(&h, &plan, &alpha, comp, X, &beta, Y, Y, ws, &st, 1))) { cusparseLtMatmulPlanDestroy(&plan); continue; }
        CK(cudaStreamSynchronize(st));
        int got = -1, gsk = -1;
        cusparseLtMatmulAlgGetAttribute(&h, &a2, CUSPARSELT_MATMUL_ALG_CONFIG_ID, &got, sizeof(got));
        cusparseLtMatmulAlgGetAttribute(&h, &a2, CUSPARSELT_MATMUL_SPLIT_K, &gsk, sizeof(gsk));
        printf("  search picked id %d split-k %d\n", got, gsk);
        cusparseLtMatmulGetWorkspace(&h, &plan, &w);
        if (w > ws_bytes) { if (ws) cudaFree(ws); CK(cudaMalloc(&ws, w)); ws_bytes = w; }
      }
      CK(cudaMemsetAsync(Y, 0xff, (size_t)M * N * 2, st));
      bool ok = LT(cusparseLtMatmul(&h, &plan, &alpha, comp, X, &beta, Y, Y, ws, &st, 1));
      if (cudaStreamSynchronize(st) != cudaSuccess) { printf("  id %d sk %d: CUDA error %s, stopping\n", id, sk, cudaGetErrorString(cudaGetLastError())); return 3; }
      if (!ok) { cusparseLtMatmulPlanDestroy(&plan); continue; }
      ref_dot<<<(S + 127) / 128, 128, 0, st>>>(X, W, Y, dm, dn, (int)K, (int)N, derr, dmag, S);
      std::vector<float> he(S), hg(S);
      CK(cudaMemcpy(he.data(), derr, S * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(hg.data(), dmag, S * 4, cudaMemcpyDeviceToHost));
      float emax = 0, gmax = 1e-6f;
      for (int s = 0; s < S; ++s) { emax = std::max(emax, he[s] != he[s] ? 1e30f : he[s]); gmax = std::max(gmax, hg[s]); }
      std::vector<float> ts;
      for (int t = 0; t < 5; ++t) {
        cudaEventRecord(e0, st);
        for (int i = 0; i < 20; ++i) cusparseLtMatmul(&h, &plan, &alpha, comp, X, &beta, Y, Y, ws, &st, 1);
        cudaEventRecord(e1, st);
        CK(cudaEventSynchronize(e1));
        float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms * 1000.f / 20);
      }
      std::sort(ts.begin(), ts.end());
      float us = ts[2];
      printf("  id %3d split-k %d: %9.1f us  max err/max|y| %.1e ws %zu\n", id, sk, us, emax / gmax, w);
      if (emax / gmax < 1e-2f && us < best) { best = us; best_id = id; best_sk = sk; }
      cusparseLtMatmulPlanDestroy(&plan);
    }
    printf("  BEST %s: %.1f us (id %d, split-k %d)\n", c.name, best, best_id, best_sk);
    if (best_id >= 0) {  // fused epilogue: D = A B + 1 * C(residual) + bias, on the best id
      __half *R, *Bv; std::vector<__half> hb(N, __float2half(0.5f));
      CK(cudaMalloc(&R, (size_t)M * N * 2)); CK(cudaMalloc(&Bv, N * 2));
      CK(cudaMemset(R, 0, (size_t)M * N * 2));  // residual all 0x3c00 = 1.0 below
      std::vector<__half> hr((size_t)M * N, __float2half(1.0f));
      CK(cudaMemcpy(R, hr.data(), hr.size() * 2, cudaMemcpyHostToDevice)); CK(cudaMemcpy(Bv, hb.data(), N * 2, cudaMemcpyHostToDevice));
      void* bp = Bv;
      cusparseLtMatmulDescriptor_t mm2;
      LT(cusparseLtMatmulDescriptorInit(&h, &mm2, c.opa, c.opb, &mA, &mB, &mC, &mC, CUSPARSE_COMPUTE_32F));
      LT(cusparseLtMatmulDescSetAttribute(&h, &mm2, CUSPARSELT_MATMUL_BIAS_POINTER, &bp, sizeof(bp)));
      cusparseLtMatmulAlgSelection_t a3; cusparseLtMatmulPlan_t p3;
      LT(cusparseLtMatmulAlgSelectionInit(&h, &a3, &mm2, CUSPARSELT_MATMUL_ALG_DEFAULT));
      LT(cusparseLtMatmulAlgSetAttribute(&h, &a3, CUSPARSELT_MATMUL_ALG_CONFIG_ID, &best_id, sizeof(best_id)));
      if (LT(cusparseLtMatmulPlanInit(&h, &p3, &mm2, &a3))) {
        float one = 1.f; size_t w = 0; cusparseLtMatmulGetWorkspace(&h, &p3, &w);
        if (w > ws_bytes) { if (ws) cudaFree(ws); CK(cudaMalloc(&ws, w)); ws_bytes = w; }
        LT(cusparseLtMatmul(&h, &p3, &alpha, comp, X, &one, R, Y, ws, &st, 1));
        CK(cudaStreamSynchronize(st));
        ref_dot<<<(S + 127) / 128, 128, 0, st>>>(X, W, Y, dm, dn, (int)K, (int)N, derr, dmag, S);
        std::vector<float> he(S), hg(S);
        CK(cudaMemcpy(he.data(), derr, S * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(hg.data(), dmag, S * 4, cudaMemcpyDeviceToHost));
        // Y - (XW) should be 1.5 everywhere (bias 0.5 + residual 1.0): err = |Y - acc| ~ 1.5
        float lo = 1e30f, hi = -1e30f;
        for (int s = 0; s < S; ++s) { lo = std::min(lo, he[s]); hi = std::max(hi, he[s]); }
        std::vector<float> ts;
        for (int t = 0; t < 5; ++t) {
          cudaEventRecord(e0, st);
          for (int i = 0; i < 20; ++i) cusparseLtMatmul(&h, &p3, &alpha, comp, X, &one, R, Y, ws, &st, 1);
          cudaEventRecord(e1, st); CK(cudaEventSynchronize(e1));
          float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms * 1000.f / 20);
        }
        std::sort(ts.begin(), ts.end());
        printf("  fused bias+residual (id %d): %.1f us, |Y - XW| in [%.3f, %.3f] (expect ~1.5)\n", best_id, ts[2], lo, hi);
        cusparseLtMatmulPlanDestroy(&p3);
      }
      cudaFree(R); cudaFree(Bv);
    }
    cudaFree(comp); if (cb) cudaFree(cb);
  }
  return 0;
}
