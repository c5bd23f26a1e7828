// Element-wise arithmetic encoders (kernels in cpp/kernels/arithmetic.metal).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// y = a + b of one shape (y may alias a or b): the graph's gradient sums.
void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);
// y = a (op) b with broadcasting.
void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p);
// g = the operand's gradient, summed over the positions it broadcasts to.
void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p);

}  // namespace metalnn::metal
