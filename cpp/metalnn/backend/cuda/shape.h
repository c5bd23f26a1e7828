// Resampling / shape kernels on CUDA (current stream). transpose_matrix goes through 32 x 32
// shared-memory tiles, so reads and writes are both coalesced.
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/shape.inc"

}  // namespace metalnn::cuda
