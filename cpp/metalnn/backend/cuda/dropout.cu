#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/dropout.h"

namespace metalnn::cuda {
namespace {

template <class S>
__global__ void dropout_forward_kernel(const S* x, S* y, uint8_t* mask, int64_t n, uint64_t key,
                                       uint32_t threshold, float scale, DeviceSeed ds) {
  if (ds.counter) {
    uint64_t v = (uint64_t)(*ds.counter + ds.offset);
    key = mnn_dropout_key(mnn_dropout_key(ds.base ^ mnn_dropout_key(v)));
  }
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t keep = mnn_dropout_keep(key, (uint64_t)i, threshold);
    mask[i] = (uint8_t)keep;
    store(y, i, load(x, i) * (keep ? scale : 0.f));  // a multiply: NaN stays NaN, as on the CPU
  }
}

template <class S>
__global__ void dropout_backward_kernel(const S* dy, const uint8_t* mask, S* dx, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(dx, i, load(dy, i) * (mask[i] ? scale : 0.f));
}

}  // namespace

void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p,
                     const DeviceSeed& ds) {
  int64_t n = x.numel();
  if (!n) return;
  auto s = current_stream();
  uint64_t key = mnn_dropout_key(p.seed);
  if (x.dtype() == DType::float16)
    dropout_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(x.data<__half>(), y.data<__half>(), mask.data<uint8_t>(),
                                                          n, key, p.threshold, p.scale, ds);
  else
    dropout_forward_kernel<<<grid_for(n), kBlock, 0, s>>>(x.data<float>(), y.data<float>(), mask.data<uint8_t>(), n,
                                                          key, p.threshold, p.scale, ds);
  check_launch("dropout_forward");
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p) {
  int64_t n = dy.numel();
  if (!n) return;
  auto s = current_stream();
  if (dy.dtype() == DType::float16)
    dropout_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<__half>(), mask.data<uint8_t>(),
                                                           dx.data<__half>(), n, p.scale);
  else
    dropout_backward_kernel<<<grid_for(n), kBlock, 0, s>>>(dy.data<float>(), mask.data<uint8_t>(), dx.data<float>(),
                                                           n, p.scale);
  check_launch("dropout_backward");
}

}  // namespace metalnn::cuda
