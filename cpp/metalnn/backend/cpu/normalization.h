// CPU normalization kernels: float32 / float16 storage computed in float32 (statistics combined
// in double), parallel over channels / planes / groups of the thread pool.
#pragma once
#include "kernels/normalization_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/normalization.inc"

}  // namespace metalnn::cpu
