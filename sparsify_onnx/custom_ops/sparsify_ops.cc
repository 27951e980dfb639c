// sparsify-onnx op layer: registers ai.sparsify::SparseLinear (version 1) with onnxruntime and
// dispatches each node, by its `kernel` attribute, to a generated launcher (see abi.h); and
// ai.sparsify::LayerNormGather (version 1), a LayerNorm that writes its row in another order (static kernels:
// here for the CPU, layernorm_gather.cu for CUDA; transform/lngather.py).
// The library exports only RegisterCustomOps; no C++ exception crosses the C boundary.
//
//   SparseLinear:     Y[..., N] = act(X[..., K] @ W + bias) + residual   (W packed in `values`, pattern baked in)
//   LayerNormGather:  Y[..., j] = LayerNormalization(X, scale, bias, epsilon)[..., index[j]]   (last axis)
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "abi.h"

#ifdef SPARSIFY_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

const OrtApi* g_api = nullptr;
constexpr const char* kDomain = "ai.sparsify";
constexpr const char* kOpName = "SparseLinear";
constexpr const char* kLnOpName = "LayerNormGather";

OrtStatus* make_status(OrtErrorCode code, const std::string& msg, const char* op = kOpName) {
  return g_api->CreateStatus(code, (std::string("ai.sparsify::") + op + ": " + msg).c_str());
}

// the launchers' return codes (abi.h), in words
std::string launcher_error(int rc) {
  switch (rc) {
    case 1: return "a CUDA launch or runtime call failed (code 1)";
    case 2: return "scratch memory missing or too small (code 2)";
    case 3: return "the batch (M rows) is too large for this kernel; split the input (code 3)";
    case 4: return "the kernel's shared memory could not be configured (code 4)";
    case 5: return "the kernel needs another GPU architecture (the wgmma kernels run only on Hopper, sm_90a) (code 5)";
    case 6: return "a cuSPARSELt (2:4) kernel keeps per-GPU state for the first 16 GPUs of a process and was called "
                   "on a GPU past those; run those sessions in another process (code 6)";
    default: return "code " + std::to_string(rc);
  }
}

const sp_kernel_entry_t* find_kernel(const char* name) {
  for (size_t i = 0; i < sp_kernel_count; ++i)
    if (sp_kernel_table[i].name && strcmp(sp_kernel_table[i].name, name) == 0) return &sp_kernel_table[i];
  return nullptr;
}

int sp_dtype_of(ONNXTensorElementDataType t) {
  return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? SP_FP16 : SP_FP32;
}

const char* dtype_name(int d) { return d == SP_FP16 ? "float16" : "float32"; }

struct ParallelCtx {
  sp_parallel_t par;
  const OrtKernelContext* ctx;
};

void ort_parallel_for(const sp_parallel_t* self, sp_task_fn fn, void* user, size_t total) {
  const ParallelCtx* pc = reinterpret_cast<const ParallelCtx*>(self);
  if (total > 1 && pc->ctx) {
    OrtStatus* st = g_api->KernelContext_ParallelFor(pc->ctx, fn, total, 0, user);
    if (st == nullptr) return;
    g_api->ReleaseStatus(st);  // no intra-op pool: run inline
  }
  for (size_t i = 0; i < total; ++i) fn(user, i);
}

#define SP_TRY(expr)                      \
  do {                                    \
    OrtStatus* _st = (expr);              \
    if (_st != nullptr) return _st;       \
  } while (0)

struct TensorInfo {
  std::vector<int64_t> shape;
  size_t count = 0;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
};

OrtStatus* tensor_info(const OrtValue* v, TensorInfo& out) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  SP_TRY(g_api->GetTensorTypeAndShape(v, &info));
  size_t nd = 0;
  OrtStatus* st = g_api->GetDimensionsCount(info, &nd);
  if (!st) {
    out.shape.resize(nd);
    st = g_api->GetDimensions(info, out.shape.data(), nd);
  }
  if (!st) st = g_api->GetTensorShapeElementCount(info, &out.count);
  if (!st) st = g_api->GetTensorElementType(info, &out.type);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  return st;
}

OrtStatus* input_data(const OrtValue* v, const void** out) {
  void* p = nullptr;
  OrtStatus* st = g_api->GetTensorMutableData(const_cast<OrtValue*>(v), &p);  // read only
  *out = p;
  return st;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

struct SparseLinearKernel {
  const sp_kernel_entry_t* e;
  bool cuda;
  // the values tensor whose derived buffers this kernel holds a reference to (e->cuda_retain), if any
  std::atomic<const void*> held{nullptr};
  std::mutex held_mu;

  ~SparseLinearKernel() {
    if (const void* v = held.load()) e->cuda_release(v);
  }

  void hold(const void* V) {
    if (!e->cuda_retain || held.load(std::memory_order_acquire) == V) return;
    std::lock_guard<std::mutex> lock(held_mu);
    const void* old = held.load();
    if (old == V) return;
    e->cuda_retain(V);
    if (old) e->cuda_release(old);
    held.store(V, std::memory_order_release);
  }

  OrtStatus* ComputeV2(OrtKernelContext* ctx) noexcept {
    try {
      return compute(ctx);
    } catch (const std::exception& ex) {
      return make_status(ORT_FAIL, std::string("kernel ") + e->name + ": " + ex.what());
    } catch (...) {
      return make_status(ORT_FAIL, std::string("kernel ") + e->name + ": unknown C++ exception");
    }
  }

  OrtStatus* compute(OrtKernelContext* ctx) {
    size_t n_in = 0;
    SP_TRY(g_api->KernelContext_GetInputCount(ctx, &n_in));
    const OrtValue* in[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t i = 0; i < n_in && i < 4; ++i) SP_TRY(g_api->KernelContext_GetInput(ctx, i, &in[i]));
    if (!in[0] || !in[1]) return make_status(ORT_INVALID_ARGUMENT, std::string("kernel ") + e->name + ": X and values are required");
    TensorInfo xi, vi, bi, ri;
    SP_TRY(tensor_info(in[0], xi));
    SP_TRY(tensor_info(in[1], vi));
    const std::string who = std::string("kernel ") + e->name + ": ";
    if (xi.shape.empty() || xi.shape.back() != e->K)
      return make_status(ORT_INVALID_ARGUMENT, who + "input X has shape " + shape_str(xi.shape) +
                                                   ", its last dimension must be K=" + std::to_string(e->K));
    if (e->values_count > 0 && (int64_t)vi.count != e->values_count)
      return make_status(ORT_INVALID_ARGUMENT, who + "input values has " + std::to_string(vi.count) +
                                                   " elements, the kernel's packed weight has " + std::to_string(e->values_count));
    if (sp_dtype_of(xi.type) != e->dtype || sp_dtype_of(vi.type) != e->dtype)
      return make_status(ORT_INVALID_ARGUMENT, who + "expects " + dtype_name(e->dtype) + " inputs");
    const void* bias = nullptr;
    const void* res = nullptr;
    if (in[2]) {
      SP_TRY(tensor_info(in[2], bi));
      if ((int64_t)bi.count != e->N)
        return make_status(ORT_INVALID_ARGUMENT, who + "bias has " + std::to_string(bi.count) + " elements, expected N=" + std::to_string(e->N));
      SP_TRY(input_data(in[2], &bias));
    }
    if (e->has_bias && !bias) return make_status(ORT_INVALID_ARGUMENT, who + "was generated with a bias; input 2 (bias) is missing");
    if (!e->has_bias && bias)
      return make_status(ORT_INVALID_ARGUMENT, who + "was generated without a bias; input 2 (bias) must be omitted");
    std::vector<int64_t> yshape = xi.shape;
    yshape.back() = e->N;
    int64_t M = 1;
    for (size_t i = 0; i + 1 < xi.shape.size(); ++i) M *= xi.shape[i];
    if (in[3]) {
      SP_TRY(tensor_info(in[3], ri));
      if ((int64_t)ri.count != M * e->N)
        return make_status(ORT_INVALID_ARGUMENT, who + "residual has shape " + shape_str(ri.shape) + ", expected " + shape_str(yshape));
      SP_TRY(input_data(in[3], &res));
    }
    if (e->has_residual && !res) return make_status(ORT_INVALID_ARGUMENT, who + "was generated with a residual add; input 3 (residual) is missing");
    if (!e->has_residual && res)
      return make_status(ORT_INVALID_ARGUMENT, who + "was generated without a residual add; input 3 (residual) must be omitted");
    OrtValue* out = nullptr;
    SP_TRY(g_api->KernelContext_GetOutput(ctx, 0, yshape.data(), yshape.size(), &out));
    if (M == 0) return nullptr;
    const void* X = nullptr;
    const void* V = nullptr;
    void* Y = nullptr;
    SP_TRY(input_data(in[0], &X));
    SP_TRY(input_data(in[1], &V));
    SP_TRY(g_api->GetTensorMutableData(out, &Y));
    int rc = 0;
    if (!cuda) {
      ParallelCtx pc;
      pc.par.parallel_for = ort_parallel_for;
      pc.par.ctx = &pc;
      pc.ctx = ctx;
      rc = e->cpu(X, V, bias, res, Y, M, &pc.par);
    } else {
#ifdef SPARSIFY_WITH_CUDA
      void* stream = nullptr;
      SP_TRY(g_api->KernelContext_GetGPUComputeStream(ctx, &stream));
      if (!e->cuda) return cpu_on_host(ctx, who, stream, X, xi.count, V, vi.count, bias, res, Y, M);
      size_t bytes = e->cuda_scratch ? e->cuda_scratch(M) : 0;
      void* scratch = nullptr;
      OrtAllocator* alloc = nullptr;
      if (bytes > 0) {
        const OrtMemoryInfo* mi = nullptr;
        SP_TRY(g_api->GetTensorMemoryInfo(out, &mi));
        SP_TRY(g_api->KernelContext_GetAllocator(ctx, mi, &alloc));
        scratch = alloc->Alloc(alloc, bytes);
        if (!scratch) {
          g_api->ReleaseAllocator(alloc);
          return make_status(ORT_FAIL, who + "could not allocate " + std::to_string(bytes) + " bytes of scratch memory");
        }
      }
      rc = e->cuda(X, V, bias, res, Y, M, stream, scratch, bytes);
      if (rc == 0) hold(V);
      if (alloc) {
        alloc->Free(alloc, scratch);  // stream-ordered: later work on this stream may reuse it
        g_api->ReleaseAllocator(alloc);
      }
#else
      return make_status(ORT_FAIL, who + "this library was built without CUDA");
#endif
    }
    if (rc != 0) return make_status(ORT_FAIL, who + "launcher failed: " + launcher_error(rc));
    return nullptr;
  }

#ifdef SPARSIFY_WITH_CUDA
  // A node placed on the CUDA provider whose kernel has only a CPU variant: copy the operands to the
  // host on the op's stream, run the CPU kernel, copy Y back. Correct, not fast.
  OrtStatus* cpu_on_host(OrtKernelContext* ctx, const std::string& who, void* stream, const void* X, size_t nx,
                         const void* V, size_t nv, const void* bias, const void* res, void* Y, int64_t M) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const size_t ny = (size_t)M * (size_t)e->N;
    std::vector<float> hx(nx), hv(nv), hb(bias ? (size_t)e->N : 0), hr(res ? ny : 0), hy(ny);
    cudaError_t err = cudaMemcpyAsync(hx.data(), X, nx * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaMemcpyAsync(hv.data(), V, nv * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess && bias) err = cudaMemcpyAsync(hb.data(), bias, hb.size() * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess && res) err = cudaMemcpyAsync(hr.data(), res, ny * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) return make_status(ORT_FAIL, who + "host fallback: " + cudaGetErrorString(err));
    ParallelCtx pc;
    pc.par.parallel_for = ort_parallel_for;
    pc.par.ctx = &pc;
    pc.ctx = ctx;
    int rc = e->cpu(hx.data(), hv.data(), bias ? hb.data() : nullptr, res ? hr.data() : nullptr, hy.data(), M, &pc.par);
    if (rc != 0) return make_status(ORT_FAIL, who + "launcher failed: " + launcher_error(rc));
    err = cudaMemcpyAsync(Y, hy.data(), ny * sizeof(float), cudaMemcpyHostToDevice, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);  // hy must outlive the copy
    if (err != cudaSuccess) return make_status(ORT_FAIL, who + "host fallback: " + cudaGetErrorString(err));
    return nullptr;
  }
#endif
};

// What both ops share: one registration per (execution provider, element type); four inputs, one output of the
// element type.
template <typename Op, typename Kernel>
struct OpBase : Ort::CustomOpBase<Op, Kernel, true> {
  OpBase(const char* ep, ONNXTensorElementDataType type, bool cuda) : ep_(ep), type_(type), cuda_(cuda) {}
  const char* GetExecutionProviderType() const { return ep_; }
  size_t GetInputTypeCount() const { return 4; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return type_; }

 protected:
  const char* ep_;
  ONNXTensorElementDataType type_;
  bool cuda_;
};

struct SparseLinearOp : OpBase<SparseLinearOp, SparseLinearKernel> {
  using OpBase::OpBase;

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** op_kernel) const noexcept {
    try {
      size_t len = 0;
      OrtStatus* st = api.KernelInfoGetAttribute_string(info, "kernel", nullptr, &len);
      if (st) {
        api.ReleaseStatus(st);
        return make_status(ORT_INVALID_ARGUMENT, "missing string attribute 'kernel'");
      }
      std::string name(len, '\0');
      SP_TRY(api.KernelInfoGetAttribute_string(info, "kernel", &name[0], &len));
      name.resize(strlen(name.c_str()));
      const sp_kernel_entry_t* e = find_kernel(name.c_str());
      if (!e)
        return make_status(ORT_INVALID_ARGUMENT, "unknown kernel '" + name + "': this libsparsify_ops.so holds " +
                                                     std::to_string(sp_kernel_count) +
                                                     " kernels; rebuild the engine for this model");
      if (e->dtype != sp_dtype_of(type_)) return make_status(ORT_INVALID_ARGUMENT, "kernel '" + name + "' is " + dtype_name(e->dtype));
      if (!cuda_ && !e->cpu) return make_status(ORT_NOT_IMPLEMENTED, "kernel '" + name + "' has no CPU variant in this library");
      if (cuda_ && !e->cuda && !e->cpu)
        return make_status(ORT_NOT_IMPLEMENTED, "kernel '" + name + "' has neither a CUDA nor a CPU variant in this library");
      *op_kernel = new SparseLinearKernel{e, cuda_};
      return nullptr;
    } catch (const std::exception& ex) {
      return make_status(ORT_FAIL, std::string("creating kernel: ") + ex.what());
    } catch (...) {
      return make_status(ORT_FAIL, "creating kernel: unknown C++ exception");
    }
  }

  const char* GetName() const { return kOpName; }
  ONNXTensorElementDataType GetInputType(size_t) const { return type_; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i < 2 ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
};

// ---- ai.sparsify::LayerNormGather ------------------------------------------------------------------------

struct LnRows {  // one CPU task: a range of rows
  const float *X, *scale, *bias;
  const int64_t* index;
  float* Y;
  int64_t M, H;
  float eps;
};

constexpr int64_t kLnRowsPerTask = 16;

void ln_gather_rows(void* user, size_t task) {
  const LnRows* a = static_cast<const LnRows*>(user);
  const int64_t m0 = (int64_t)task * kLnRowsPerTask, m1 = std::min(a->M, m0 + kLnRowsPerTask);
  for (int64_t m = m0; m < m1; ++m) {
    const float* x = a->X + m * a->H;
    float* y = a->Y + m * a->H;
    float sum = 0.f;
    for (int64_t k = 0; k < a->H; ++k) sum += x[k];
    const float mean = sum / a->H;
    float sq = 0.f;
    for (int64_t k = 0; k < a->H; ++k) sq += (x[k] - mean) * (x[k] - mean);
    const float rstd = 1.f / std::sqrt(sq / a->H + a->eps);
    for (int64_t j = 0; j < a->H; ++j) {
      const int64_t k = a->index[j];
      y[j] = (x[k] - mean) * rstd * a->scale[k] + a->bias[k];
    }
  }
}

struct LayerNormGatherKernel {
  bool cuda;
  float eps;

  OrtStatus* ComputeV2(OrtKernelContext* ctx) noexcept {
    try {
      return compute(ctx);
    } catch (const std::exception& ex) {
      return make_status(ORT_FAIL, ex.what(), kLnOpName);
    } catch (...) {
      return make_status(ORT_FAIL, "unknown C++ exception", kLnOpName);
    }
  }

  OrtStatus* compute(OrtKernelContext* ctx) {
    const OrtValue* in[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t i = 0; i < 4; ++i) SP_TRY(g_api->KernelContext_GetInput(ctx, i, &in[i]));
    TensorInfo xi, si, bi, ii;
    SP_TRY(tensor_info(in[0], xi));
    SP_TRY(tensor_info(in[1], si));
    SP_TRY(tensor_info(in[2], bi));
    SP_TRY(tensor_info(in[3], ii));
    if (xi.shape.empty()) return make_status(ORT_INVALID_ARGUMENT, "input X must have at least one axis", kLnOpName);
    const int64_t H = xi.shape.back();
    if ((int64_t)si.count != H || (int64_t)bi.count != H || (int64_t)ii.count != H)
      return make_status(ORT_INVALID_ARGUMENT, "X has shape " + shape_str(xi.shape) + "; scale, bias and index must have " +
                                                   std::to_string(H) + " elements each (they have " + std::to_string(si.count) +
                                                   ", " + std::to_string(bi.count) + ", " + std::to_string(ii.count) + ")",
                         kLnOpName);
    if (si.type != xi.type || bi.type != xi.type)
      return make_status(ORT_INVALID_ARGUMENT, "scale and bias must have X's element type", kLnOpName);
    OrtValue* out = nullptr;
    SP_TRY(g_api->KernelContext_GetOutput(ctx, 0, xi.shape.data(), xi.shape.size(), &out));
    const int64_t M = H > 0 ? (int64_t)xi.count / H : 0;
    if (M == 0) return nullptr;
    const void *X = nullptr, *S = nullptr, *B = nullptr, *I = nullptr;
    void* Y = nullptr;
    SP_TRY(input_data(in[0], &X));
    SP_TRY(input_data(in[1], &S));
    SP_TRY(input_data(in[2], &B));
    SP_TRY(input_data(in[3], &I));
    SP_TRY(g_api->GetTensorMutableData(out, &Y));
    if (!cuda) {
      const int64_t* index = static_cast<const int64_t*>(I);
      for (int64_t j = 0; j < H; ++j)
        if (index[j] < 0 || index[j] >= H)
          return make_status(ORT_INVALID_ARGUMENT, "index[" + std::to_string(j) + "] = " + std::to_string(index[j]) +
                                                       " is outside 0.." + std::to_string(H - 1), kLnOpName);
      LnRows a{static_cast<const float*>(X), static_cast<const float*>(S), static_cast<const float*>(B), index,
               static_cast<float*>(Y), M, H, eps};
      ParallelCtx pc;
      pc.par.parallel_for = ort_parallel_for;
      pc.par.ctx = &pc;
      pc.ctx = ctx;
      pc.par.parallel_for(&pc.par, ln_gather_rows, &a, (size_t)((M + kLnRowsPerTask - 1) / kLnRowsPerTask));
      return nullptr;
    }
#ifdef SPARSIFY_WITH_CUDA
    void* stream = nullptr;
    SP_TRY(g_api->KernelContext_GetGPUComputeStream(ctx, &stream));
    int rc = sp_layernorm_gather_cuda(X, S, B, static_cast<const int64_t*>(I), Y, M, H, eps, sp_dtype_of(xi.type), stream);
    if (rc == 3)  // (abi.h: for this op, the row does not fit in shared memory)
      return make_status(ORT_INVALID_ARGUMENT, "rows of H = " + std::to_string(H) +
                                                   " are too long for the CUDA kernel (at most 58112 elements)", kLnOpName);
    if (rc != 0) return make_status(ORT_FAIL, "launcher failed: " + launcher_error(rc), kLnOpName);
    return nullptr;
#else
    return make_status(ORT_FAIL, "this library was built without CUDA", kLnOpName);
#endif
  }
};

struct LayerNormGatherOp : OpBase<LayerNormGatherOp, LayerNormGatherKernel> {
  using OpBase::OpBase;

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** op_kernel) const noexcept {
    try {
      float eps = 1e-5f;
      OrtStatus* st = api.KernelInfoGetAttribute_float(info, "epsilon", &eps);
      if (st) {
        api.ReleaseStatus(st);  // (absent: LayerNormalization's default)
        eps = 1e-5f;
      }
      *op_kernel = new LayerNormGatherKernel{cuda_, eps};
      return nullptr;
    } catch (const std::exception& ex) {
      return make_status(ORT_FAIL, std::string("creating kernel: ") + ex.what(), kLnOpName);
    } catch (...) {
      return make_status(ORT_FAIL, "creating kernel: unknown C++ exception", kLnOpName);
    }
  }

  const char* GetName() const { return kLnOpName; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : type_;
  }
};

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                          const OrtApiBase* api_base) {
  if (!api_base) return nullptr;
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) {
    // an onnxruntime older than the headers: report it through the newest API it has
    for (int v = ORT_API_VERSION - 1; v >= 1 && !api; --v) api = api_base->GetApi(v);
    if (!api) return nullptr;
    return api->CreateStatus(ORT_FAIL, ("libsparsify_ops.so needs onnxruntime API version >= " +
                                        std::to_string(ORT_API_VERSION) + " (onnxruntime " +
                                        api_base->GetVersionString() + " is older)").c_str());
  }
  Ort::InitApi(api);
  g_api = api;
  try {
    static SparseLinearOp cpu_f32(nullptr, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false);
    static LayerNormGatherOp ln_cpu_f32(nullptr, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, false);
#ifdef SPARSIFY_WITH_CUDA
    static SparseLinearOp cuda_f32("CUDAExecutionProvider", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true);
    static SparseLinearOp cuda_f16("CUDAExecutionProvider", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true);
    static LayerNormGatherOp ln_cuda_f32("CUDAExecutionProvider", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, true);
    static LayerNormGatherOp ln_cuda_f16("CUDAExecutionProvider", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, true);
#endif
    OrtCustomOpDomain* domain = nullptr;
    SP_TRY(api->CreateCustomOpDomain(kDomain, &domain));
    // the domain must outlive every session that uses it: it is kept for the life of the process
    SP_TRY(api->CustomOpDomain_Add(domain, &cpu_f32));
    SP_TRY(api->CustomOpDomain_Add(domain, &ln_cpu_f32));
#ifdef SPARSIFY_WITH_CUDA
    SP_TRY(api->CustomOpDomain_Add(domain, &cuda_f32));
    SP_TRY(api->CustomOpDomain_Add(domain, &cuda_f16));
    SP_TRY(api->CustomOpDomain_Add(domain, &ln_cuda_f32));
    SP_TRY(api->CustomOpDomain_Add(domain, &ln_cuda_f16));
#endif
    return api->AddCustomOpDomain(options, domain);
  } catch (const std::exception& ex) {
    return api->CreateStatus(ORT_FAIL, (std::string("RegisterCustomOps: ") + ex.what()).c_str());
  } catch (...) {
    return api->CreateStatus(ORT_FAIL, "RegisterCustomOps: unknown C++ exception");
  }
}
