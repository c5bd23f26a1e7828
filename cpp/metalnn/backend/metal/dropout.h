// Dropout encoders (kernels in cpp/kernels/dropout.metal); the uint8 mask is the state.
#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p);
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p);

}  // namespace metalnn::metal
