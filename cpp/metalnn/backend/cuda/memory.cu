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

}  // namespace metalnn::cuda
