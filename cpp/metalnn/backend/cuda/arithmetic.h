// Elementwise arithmetic on CUDA.
#pragma once
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);

}  // namespace metalnn::cuda
