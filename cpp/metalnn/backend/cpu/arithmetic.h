// Broadcasting element-wise arithmetic on the CPU (params: kernels/arithmetic_params.h).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p);
// g (the operand's shape) = the sum over broadcast positions of the op's gradient term.
void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p);

}  // namespace metalnn::cpu
