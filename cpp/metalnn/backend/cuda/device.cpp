#include "metalnn/backend/cuda/device.h"

#include <mutex>

#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

class CudaAllocator final : public Allocator {
 protected:
  void* raw_allocate(size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error so the caller can retry after a purge
      return nullptr;
    }
    return p;
  }
  // Frees synchronise the device, so a block never leaves while a kernel still uses it.
  void raw_free(void* p) override { cudaFree(p); }
  Device device() const override { return Device{DeviceType::cuda, 0}; }
};

thread_local cudaStream_t t_stream = nullptr;

cudaStream_t backend_stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cuda");
    return st;
  }();
  return s;
}

}  // namespace

void check(cudaError_t e, const char* op) {
  if (e != cudaSuccess) fail(ErrorKind::Runtime, op, "CUDA error: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

cudaStream_t current_stream() { return t_stream ? t_stream : backend_stream(); }
void set_current_stream(cudaStream_t s) { t_stream = s; }

int device_count() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

bool available() { return device_count() > 0; }

Allocator& allocator() {
  // Leaked on purpose: buffers may outlive static destruction at interpreter exit.
  static auto* a = new CudaAllocator();
  return *a;
}

void copy_to_device(void* dst, const void* src, size_t bytes, const char* op) {
  if (!bytes) return;
  cudaStream_t s = current_stream();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), op);
  // Pageable host memory may be reused by the caller as soon as we return.
  check(cudaStreamSynchronize(s), op);
}

void copy_to_host(void* dst, const void* src, size_t bytes, const char* op) {
  if (!bytes) return;
  cudaStream_t s = current_stream();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), op);
  check(cudaStreamSynchronize(s), op);
}

void fill_zero(void* dst, size_t bytes, const char* op) {
  if (bytes) check(cudaMemsetAsync(dst, 0, bytes, current_stream()), op);
}

void synchronize(const char* op) { check(cudaStreamSynchronize(current_stream()), op); }

}  // namespace metalnn::cuda
