// sparsify-onnx: the ABI between generated kernels and the custom-op layer.
// Every generated kernel exports C launchers with these signatures, named
// <procedural_name>_cpu and <procedural_name>_cuda. Return 0 on success,
// non-zero on failure (the op layer turns it into an onnxruntime error status):
//   1 a CUDA launch or runtime call failed, 2 scratch missing or smaller than _cuda_scratch(M),
//   3 M too large for this kernel (grid or 32-bit index limits), 4 the kernel's shared memory could not be
//   configured, 5 the kernel needs another GPU architecture (the wgmma kernels: Hopper, sm_90a), 6 the kernel
//   keeps per-GPU state for the first 16 GPUs of the process and was called on another one (cuSPARSELt).
// Pointers are to contiguous row-major data; X is [M, K], Y and residual [M, N],
// bias [N], values is the packed weight (codegen/packing.py).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*sp_task_fn)(void* user, size_t index);

// Parallel-for handed to CPU kernels (backed by onnxruntime's intra-op pool
// through KernelContext_ParallelFor when available, else a plain loop).
typedef struct sp_parallel {
  void (*parallel_for)(const struct sp_parallel* self, sp_task_fn fn, void* user, size_t total);
  void* ctx;
} sp_parallel_t;

typedef int (*sp_cpu_kernel_fn)(const void* X, const void* values, const void* bias, const void* residual,
                                void* Y, int64_t M, const sp_parallel_t* par);

// stream is the cudaStream_t onnxruntime gives the op (KernelContext_GetGPUComputeStream).
// scratch (scratch_bytes, from onnxruntime's allocator) is sized by the kernel's _cuda_scratch(M).
typedef int (*sp_cuda_kernel_fn)(const void* X, const void* values, const void* bias, const void* residual,
                                 void* Y, int64_t M, void* stream, void* scratch, size_t scratch_bytes);
typedef size_t (*sp_cuda_scratch_fn)(int64_t M);
// Kernels that derive device buffers from the values (cuSPARSELt's compressed W, the Hopper cover) keep one set per
// values tensor. The op layer holds a reference per kernel instance: retain on its first call with a values pointer,
// release when onnxruntime destroys the kernel (its session); the last release frees that values tensor's buffers.
typedef void (*sp_cuda_ref_fn)(const void* values);

enum sp_dtype { SP_FP32 = 0, SP_FP16 = 1 };

typedef struct sp_kernel_entry {
  const char* name;  // procedural name, the op's `kernel` attribute
  int64_t K, N;
  int dtype;  // enum sp_dtype
  int has_bias, has_residual;
  sp_cpu_kernel_fn cpu;           // NULL when only a CUDA variant exists
  sp_cuda_kernel_fn cuda;         // NULL when built without CUDA
  sp_cuda_scratch_fn cuda_scratch;  // NULL when no scratch is needed
  int64_t values_count;  // elements of the packed `values` input (checked by the op layer)
  sp_cuda_ref_fn cuda_retain, cuda_release;  // NULL when the kernel derives nothing from the values
} sp_kernel_entry_t;

// The dispatch table, generated as registry.cc (codegen.generate); terminated by a NULL name.
extern const sp_kernel_entry_t sp_kernel_table[];
extern const size_t sp_kernel_count;

// ai.sparsify::LayerNormGather's CUDA launcher (static, layernorm_gather.cu; built with the CUDA kernels):
// Y[m, j] = (X[m, index[j]] - mean_m) * rstd_m * scale[index[j]] + bias[index[j]] over rows of H, fp32 math;
// X, Y, scale, bias of `dtype` (enum sp_dtype), index a permutation of 0..H-1 (an entry out of range gives NaN).
// Returns 0, or 1 (launch failed), 3 (H too large), 4 (shared memory could not be configured).
int sp_layernorm_gather_cuda(const void* X, const void* scale, const void* bias, const int64_t* index, void* Y,
                             int64_t M, int64_t H, float eps, int dtype, void* stream);

#ifdef __cplusplus
}
#endif
