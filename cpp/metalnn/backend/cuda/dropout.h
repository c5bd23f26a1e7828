// Dropout on CUDA: the mask comes from the shared hash in kernels/dropout_params.h, so it
// is bit-identical to the CPU backend's for the same seed.
#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

// A seed read from device memory when the launch is replayed from a CUDA graph (counter
// non-null): seed = key(base ^ key(*counter + offset)), p.seed ignored.
struct DeviceSeed {
  const int64_t* counter = nullptr;
  int64_t offset = 0;
  uint64_t base = 0;
};
// As the CPU's and Metal's (kernels/dropout.inc), plus the device seed.
void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p,
                     const DeviceSeed& device_seed = {});
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p);

}  // namespace metalnn::cuda
