// Dropout on CUDA: the mask comes from the shared hash in kernels/dropout_params.h, so it
// is bit-identical to the CPU backend's for the same seed.
#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p);
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p);

}  // namespace metalnn::cuda
