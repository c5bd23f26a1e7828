// Broadcasting element-wise arithmetic on CUDA (current stream).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p);
void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p);

}  // namespace metalnn::cuda
