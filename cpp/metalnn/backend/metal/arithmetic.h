// Element-wise arithmetic encoders (kernels in cpp/kernels/arithmetic.metal).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/arithmetic.inc"

// y = a + b of one shape (y may alias a or b): the graph's gradient sums.
void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);

}  // namespace metalnn::metal
