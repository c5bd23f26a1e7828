// Softmax / log-softmax encoders (kernels in cpp/kernels/softmax.metal): the input viewed
// as (n, c, s), one threadgroup per (image, position).
#pragma once
#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/softmax.inc"

}  // namespace metalnn::metal
