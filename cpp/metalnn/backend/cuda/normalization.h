// Normalization on CUDA (float32 and float16 storage, float accumulation, warp reductions).
#pragma once
#include "kernels/normalization_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/normalization.inc"

}  // namespace metalnn::cuda
