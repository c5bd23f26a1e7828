// Softmax / log-softmax over the channel axis on CUDA, forward and gradient.
#pragma once
#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void softmax_forward(const Tensor& x, const Tensor& y, const MnnSoftmaxParams& p);
void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx, const MnnSoftmaxParams& p);

}  // namespace metalnn::cuda
