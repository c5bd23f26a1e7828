// Resampling / shape kernels on the CPU (params: kernels/shape_params.h). Copies move
// storage bits (float16 stays bit-exact); sums are computed in float32 and rounded once.
// transpose_matrix runs in 32 x 32 blocks.
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/shape.inc"

}  // namespace metalnn::cpu
