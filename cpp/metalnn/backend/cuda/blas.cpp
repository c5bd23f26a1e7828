#include "metalnn/backend/cuda/blas.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/cudnn.h"

#ifndef METALNN_CUBLAS_DIR
#define METALNN_CUBLAS_DIR ""
#endif

namespace metalnn::cuda {
namespace {

// The few cuBLAS declarations used, with the values of cublas_api.h (stable ABI).
using Handle = void*;
using CreateFn = int (*)(Handle*);
using SetStreamFn = int (*)(Handle, cudaStream_t);
using SetWorkspaceFn = int (*)(Handle, void*, size_t);
using DestroyFn = int (*)(Handle);
using GemmFn = int (*)(Handle, int, int, int, int, int, const void*, const void*, cudaDataType, int, long long,
                       const void*, cudaDataType, int, long long, const void*, void*, cudaDataType, int, long long,
                       int, int, int);
using GemmExFn = int (*)(Handle, int, int, int, int, int, const void*, const void*, cudaDataType, int, const void*,
                         cudaDataType, int, const void*, void*, cudaDataType, int, int, int);
constexpr int kOpN = 0, kOpT = 1, kCompute16F = 64, kCompute32F = 68, kCompute32FFastTf32 = 77, kGemmDefault = -1;

struct Lib {
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  SetWorkspaceFn set_workspace = nullptr;
  DestroyFn destroy = nullptr;
  GemmFn gemm = nullptr;
  GemmExFn gemm_ex = nullptr;  // single products: cuBLAS's non-batched heuristics
  bool strided_only = false;   // METALNN_CUBLAS_STRIDED=1: every product through the batched call
  std::string error;
};

const Lib& lib() {
  static Lib l = [] {
    Lib r;
    void* h = nullptr;
    std::string dir = METALNN_CUBLAS_DIR;
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      if (!dir.empty() && (h = dlopen((dir + "/" + name).c_str(), RTLD_NOW | RTLD_GLOBAL))) break;
      if ((h = dlopen(name, RTLD_NOW | RTLD_GLOBAL))) break;
    }
    if (!h) {
      const char* e = dlerror();
      r.error = std::string("cannot load libcublas (looked in '") + dir + "' and the loader path): " + (e ? e : "");
      return r;
    }
    r.create = (CreateFn)dlsym(h, "cublasCreate_v2");
    r.set_stream = (SetStreamFn)dlsym(h, "cublasSetStream_v2");
    r.gemm = (GemmFn)dlsym(h, "cublasGemmStridedBatchedEx");
    r.set_workspace = (SetWorkspaceFn)dlsym(h, "cublasSetWorkspace_v2");
    r.destroy = (DestroyFn)dlsym(h, "cublasDestroy_v2");
    r.gemm_ex = (GemmExFn)dlsym(h, "cublasGemmEx");
    const char* env = std::getenv("METALNN_CUBLAS_STRIDED");
    r.strided_only = env && env[0] == '1';
    if (!r.create || !r.set_stream || !r.gemm) r.error = "libcublas lacks cublasGemmStridedBatchedEx";
    return r;
  }();
  return l;
}

}  // namespace

void gemm(const char* op, bool trans_a, bool trans_b, int m, int n, int k, const void* a, int lda, int64_t stride_a,
          const void* b, int ldb, int64_t stride_b, void* c, int ldc, int64_t stride_c, int batch, bool ab_half,
          bool c_half, float beta, bool half_accumulation) {
  const Lib& l = lib();
  if (!l.gemm) fail(ErrorKind::Runtime, op, l.error);
  // One handle per host thread (stream workers and the caller), bound to the current stream,
  // released with its thread.
  struct PerThread {
    Handle handle = nullptr;
    void* workspace = nullptr;
    ~PerThread() {
      if (handle && lib().destroy) lib().destroy(handle);
      if (workspace) cudaFree(workspace);
      cudaGetLastError();
    }
  };
  thread_local PerThread t;
  Handle& handle = t.handle;
  if (!handle) {
    if (l.create(&handle) != 0) fail(ErrorKind::Runtime, op, "cublasCreate failed");
    // An own workspace, so a CUDA graph capture records no allocation inside cuBLAS.
    constexpr size_t kWorkspace = size_t(32) << 20;
    if (l.set_workspace && cudaMalloc(&t.workspace, kWorkspace) == cudaSuccess)
      l.set_workspace(handle, t.workspace, kWorkspace);
    cudaGetLastError();
  }
  l.set_stream(handle, current_stream());
  const float alpha = 1.f;
  cudaDataType ab = ab_half ? CUDA_R_16F : CUDA_R_32F, ct = c_half ? CUDA_R_16F : CUDA_R_32F;
  int compute = kCompute32F;
  const void *pa = &alpha, *pb = &beta;
  __half alpha_h = __float2half(1.f), beta_h = __float2half(beta);
  if (half_accumulation) {
    if (!ab_half || !c_half) fail(ErrorKind::Value, op, "accumulation='half' needs float16 operands");
    compute = kCompute16F;  // alpha and beta are then float16 too
    pa = &alpha_h;
    pb = &beta_h;
  } else if (!ab_half && allow_tf32()) {
    compute = kCompute32FFastTf32;
  }
  const int ta = trans_a ? kOpT : kOpN, tb = trans_b ? kOpT : kOpN;
  int st = batch == 1 && l.gemm_ex && !l.strided_only
               ? l.gemm_ex(handle, ta, tb, m, n, k, pa, a, ab, lda, b, ab, ldb, pb, c, ct, ldc, compute, kGemmDefault)
               : l.gemm(handle, ta, tb, m, n, k, pa, a, ab, lda, stride_a, b, ab, ldb, stride_b, pb, c, ct, ldc,
                        stride_c, batch, compute, kGemmDefault);
  if (st != 0) fail(ErrorKind::Runtime, op, "cuBLAS GEMM failed with status ", st);
}

}  // namespace metalnn::cuda
