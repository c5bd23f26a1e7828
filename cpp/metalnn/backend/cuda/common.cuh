// Shared by the .cu/.cpp files of the CUDA backend: error checks, the current stream,
// launch sizes and float16 loads/stores (computed in float32, rounded once).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "metalnn/core/dtype.h"
#include "metalnn/core/error.h"

namespace metalnn::cuda {

// Raises a RuntimeError "[op] CUDA error: ..." when `e` is not cudaSuccess.
void check(cudaError_t e, const char* op);
// The stream ops enqueue on: a CudaStream's while it runs a command list, else the
// backend's own stream.
cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);
// After a launch: configuration errors surface at once, named after the op.
inline void check_launch(const char* op) { check(cudaGetLastError(), op); }
// True while `s` is being captured into a CUDA graph (no waits or host copies then).
bool capturing(cudaStream_t s);
// Copies of at most kSmallCopyBytes from host memory, passed by value to a kernel.
constexpr size_t kSmallCopyBytes = 2048;
void copy_small_to_device(void* dst, const void* src, size_t bytes, cudaStream_t s, const char* op);

constexpr int kBlock = 256;
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t g = (n + block - 1) / block;
  // Grid-stride loops cover the rest; 64k blocks keep every SM busy.
  return (unsigned)(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}

#ifdef __CUDACC__
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// Calls f(T{}) with T the storage type of a float32 / float16 tensor, so a launch is written once.
template <class F>
void with_storage_type(DType dtype, F&& f) {
  if (dtype == DType::float16)
    f(__half{});
  else
    f(float{});
}
#endif

}  // namespace metalnn::cuda
