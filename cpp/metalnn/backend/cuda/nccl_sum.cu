// The deterministic all-reduce's local sum: every rank adds the gathered buffers in rank
// order, so each rank (and each run) gets the same bits.
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/nccl.h"

namespace metalnn::cuda {
namespace {

__global__ void sum_ranks_kernel(const float* gathered, int nranks, int64_t n, float scale, float* out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float acc = gathered[i];
    for (int r = 1; r < nranks; ++r) acc += gathered[(int64_t)r * n + i];
    out[i] = acc * scale;
  }
}

}  // namespace

void sum_ranks(const float* gathered, int nranks, size_t n, float scale, float* out, void* stream) {
  if (!n) return;
  sum_ranks_kernel<<<grid_for((int64_t)n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
      gathered, nranks, (int64_t)n, scale, out);
  check_launch("allreduce");
}

}  // namespace metalnn::cuda
