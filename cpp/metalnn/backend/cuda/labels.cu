#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/labels.h"

namespace metalnn::cuda {
namespace {

template <class T>
__global__ void to_int32_kernel(const T* src, int32_t* dst, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = (int32_t)src[i];
}

__global__ void half_to_float_kernel(const __half* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __half2float(src[i]);
}

}  // namespace

Tensor labels_to_int32(const Tensor& labels, const char* op) {
  Tensor out = Tensor::empty(labels.shape(), DType::int32, labels.device());
  const int64_t n = labels.numel();
  if (!n) return out;
  auto s = current_stream();
  if (labels.dtype() == DType::int64)
    to_int32_kernel<<<grid_for(n), kBlock, 0, s>>>(labels.data<int64_t>(), out.data<int32_t>(), n);
  else
    check(cudaMemcpyAsync(out.raw(), labels.raw(), out.nbytes(), cudaMemcpyDeviceToDevice, s), op);
  check_launch(op);
  return out;
}

Tensor labels_to_float32(const Tensor& labels, const char* op) {
  Tensor out = Tensor::empty(labels.shape(), DType::float32, labels.device());
  const int64_t n = labels.numel();
  if (!n) return out;
  auto s = current_stream();
  if (labels.dtype() == DType::float16)
    half_to_float_kernel<<<grid_for(n), kBlock, 0, s>>>(labels.data<__half>(), out.data<float>(), n);
  else
    check(cudaMemcpyAsync(out.raw(), labels.raw(), out.nbytes(), cudaMemcpyDeviceToDevice, s), op);
  check_launch(op);
  return out;
}

}  // namespace metalnn::cuda
