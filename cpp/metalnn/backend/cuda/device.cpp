#include "metalnn/backend/cuda/device.h"

#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

thread_local cudaStream_t t_stream = nullptr;
thread_local HostAccess* t_access = nullptr;

bool is_input(const void* p, size_t bytes) {
  if (!t_access) return false;
  auto a = reinterpret_cast<uintptr_t>(p);
  for (const auto& [q, n] : t_access->inputs) {
    auto b = reinterpret_cast<uintptr_t>(q);
    if (a >= b && a + bytes <= b + n) return true;
  }
  return false;
}

// Notes, during a probing batch, an operation no capture could record.
void note_blocked(const char* op, const char* what) {
  if (t_access && t_access->probing && !t_access->blocked) {
    t_access->blocked = true;
    t_access->what = std::string("[") + op + "] " + what;
  }
}

// A stream no capture ever uses, for host reads of inputs during one.
cudaStream_t side_stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cuda");
    return st;
  }();
  return s;
}

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
void set_host_access(HostAccess* access) { t_access = access; }

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

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) cudaGetLastError();
  return st != cudaStreamCaptureStatusNone;
}

void copy_to_device(void* dst, const void* src, size_t bytes, const char* op) {
  if (!bytes) return;
  cudaStream_t s = current_stream();
  // Small copies travel as kernel arguments: no wait, and a graph capture records them.
  if (bytes <= kSmallCopyBytes) return copy_small_to_device(dst, src, bytes, s, op);
  note_blocked(op, "large host-to-device copy");
  if (capturing(s))
    fail(ErrorKind::Runtime, op, "cannot copy ", bytes, " host bytes to the device inside a CUDA graph capture");
  // From pageable memory the driver stages the bytes before returning, so the caller may
  // reuse `src` at once; other streams see the copy through the events a CudaStream waits on.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), op);
}

void copy_to_host(void* dst, const void* src, size_t bytes, const char* op) {
  if (!bytes) return;
  cudaStream_t s = current_stream();
  if (is_input(src, bytes)) {
    // A batch input: written on the encoding thread's stream before the batch was queued,
    // never by the batch itself, so it can be read now, capture or not.
    cudaStream_t side = side_stream();
    check(cudaStreamSynchronize(backend_stream()), op);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, side), op);
    check(cudaStreamSynchronize(side), op);
    return;
  }
  note_blocked(op, "host read of device memory");
  // A capture runs nothing: the host would read bytes no kernel has written yet.
  if (capturing(s)) fail(ErrorKind::Runtime, op, "cannot read device memory on the host inside a CUDA graph capture");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), op);
  check(cudaStreamSynchronize(s), op);
}

void fill_zero(void* dst, size_t bytes, const char* op) {
  if (bytes) check(cudaMemsetAsync(dst, 0, bytes, current_stream()), op);
}

void synchronize(const char* op) {
  cudaStream_t s = current_stream();
  note_blocked(op, "wait for the device");
  if (capturing(s)) fail(ErrorKind::Runtime, op, "cannot wait for the device inside a CUDA graph capture");
  check(cudaStreamSynchronize(s), op);
}

}  // namespace metalnn::cuda
