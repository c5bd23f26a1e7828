// Small host-to-device copies as kernel arguments: nothing to wait for (the launch copies
// the bytes), and a CUDA graph capture records them like any kernel.
#include <cstring>

#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

struct SmallBytes {
  unsigned char b[kSmallCopyBytes];
};

__global__ void copy_small_kernel(unsigned char* dst, SmallBytes src, unsigned n) {
  for (unsigned i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];
}

}  // namespace

void copy_small_to_device(void* dst, const void* src, size_t bytes, cudaStream_t s, const char* op) {
  SmallBytes v;
  std::memcpy(v.b, src, bytes);
  copy_small_kernel<<<1, 256, 0, s>>>(static_cast<unsigned char*>(dst), v, (unsigned)bytes);
  check_launch(op);
}

// The device words of a captured graph's counters (graph_capture.cpp): set before a launch
// when the host counter was changed, advanced by the graph's last node.
constexpr int kMaxCounters = 16;
struct CounterDeltas {
  int64_t d[kMaxCounters];
};

__global__ void set_word_kernel(int64_t* dst, int64_t v) { *dst = v; }
__global__ void add_words_kernel(int64_t* words, CounterDeltas deltas, int n) {
  if ((int)threadIdx.x < n) words[threadIdx.x] += deltas.d[threadIdx.x];
}

void set_device_word(int64_t* dst, int64_t value, cudaStream_t s) {
  set_word_kernel<<<1, 1, 0, s>>>(dst, value);
  check_launch("graph");
}

void add_device_words(int64_t* words, const int64_t* deltas, int n, cudaStream_t s) {
  CounterDeltas d{};
  for (int i = 0; i < n && i < kMaxCounters; ++i) d.d[i] = deltas[i];
  add_words_kernel<<<1, 32, 0, s>>>(words, d, n);
  check_launch("graph");
}

}  // namespace metalnn::cuda
