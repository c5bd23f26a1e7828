#include "metalnn/backend/cuda/arithmetic.h"
#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

template <class S>
__global__ void add_kernel(const S* a, const S* b, S* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(y, i, load(a, i) + load(b, i));
}

}  // namespace

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  int64_t n = a.numel();
  if (!n) return;
  auto s = current_stream();
  if (a.dtype() == DType::float16)
    add_kernel<<<grid_for(n), kBlock, 0, s>>>(a.data<__half>(), b.data<__half>(), y.data<__half>(), n);
  else
    add_kernel<<<grid_for(n), kBlock, 0, s>>>(a.data<float>(), b.data<float>(), y.data<float>(), n);
  check_launch("add_forward");
}

}  // namespace metalnn::cuda
