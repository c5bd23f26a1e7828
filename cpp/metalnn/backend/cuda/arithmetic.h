// Broadcasting element-wise arithmetic on CUDA (current stream).
#pragma once
#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/arithmetic.inc"

}  // namespace metalnn::cuda
