// Broadcasting element-wise arithmetic on the CPU (params: kernels/arithmetic_params.h).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/arithmetic.inc"

}  // namespace metalnn::cpu
