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

// Packs use 16-byte accesses: a view at another offset takes the scalar path.
inline bool aligned16(const void* p) { return p == nullptr || ((uintptr_t)p & 15) == 0; }
// Blocks for a grid-stride kernel whose threads each take `per_thread` items per pass.
inline unsigned grid_for_items(int64_t n, int per_thread, int block = kBlock) {
  return grid_for((n + per_thread - 1) / per_thread, block);
}

#ifdef __CUDACC__
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// 16-byte packs for element-wise kernels: 4 floats or 8 halves per load/store, so each
// thread keeps more bytes in flight (scalar 4-byte accesses reached ~0.6x PyTorch's GB/s).
template <class S>
struct Pack;
template <>
struct Pack<float> {
  using T = float4;
  static constexpr int n = 4;
  static __device__ __forceinline__ void unpack(const float4& v, float* f) {
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  }
  static __device__ __forceinline__ float4 pack(const float* f) { return make_float4(f[0], f[1], f[2], f[3]); }
};
template <>
struct Pack<__half> {
  using T = uint4;
  static constexpr int n = 8;
  static __device__ __forceinline__ void unpack(const uint4& v, float* f) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float2 t = __half22float2(h[k]);
      f[2 * k] = t.x, f[2 * k + 1] = t.y;
    }
  }
  static __device__ __forceinline__ uint4 pack(const float* f) {
    uint4 v;
    __half2* h = reinterpret_cast<__half2*>(&v);
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
    return v;
  }
};

// Loads pack i of p (16-byte aligned) as floats; stores floats as pack i.
template <class S>
__device__ __forceinline__ void load_pack(const S* p, int64_t i, float* f) {
  Pack<S>::unpack(reinterpret_cast<const typename Pack<S>::T*>(p)[i], f);
}
template <class S>
__device__ __forceinline__ void store_pack(S* p, int64_t i, const float* f) {
  reinterpret_cast<typename Pack<S>::T*>(p)[i] = Pack<S>::pack(f);
}

// Calls f(T{}) with T the storage type of a float32 / float16 tensor, so a launch is written once.
template <class F>
void with_storage_type(DType dtype, F&& f) {
  if (dtype == DType::float16)
    f(__half{});
  else
    f(float{});
}
#endif

#ifdef __CUDACC__
// Calls f(I{}) with I = uint32_t when every index below n plus one grid stride fits in 31
// bits (32-bit divisions cost a fraction of 64-bit ones), else int64_t.
template <class F>
void with_index_type(int64_t n, F&& f) {
  if (n < ((int64_t)1 << 31) - (int64_t)65535 * 1024)
    f(uint32_t{});
  else
    f(int64_t{});
}
#endif

}  // namespace metalnn::cuda
