#pragma once
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y);

}  // namespace metalnn::cpu
