// Element-wise arithmetic encoders (kernels in cpp/kernels/arithmetic.metal).
#pragma once
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// y = a + b (y may alias a or b).
void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);

}  // namespace metalnn::metal
