// Resampling / shape encoders (kernels in cpp/kernels/shape.metal).
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/shape.inc"

}  // namespace metalnn::metal
