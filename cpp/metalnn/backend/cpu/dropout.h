#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// Draws the mask (uint8, 1 kept) and writes y = x * mask * scale.
void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p);
// dx = dy * mask * scale.
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p);

}  // namespace metalnn::cpu
