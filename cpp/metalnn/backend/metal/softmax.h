// Softmax / log-softmax encoders (kernels in cpp/kernels/softmax.metal): the input viewed
// as (n, c, s), one threadgroup per (image, position).
#pragma once
#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

void softmax_forward(const Tensor& x, const Tensor& y, const MnnSoftmaxParams& p);
// y is the forward output (log-softmax output when p.log).
void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx, const MnnSoftmaxParams& p);

}  // namespace metalnn::metal
