// Dropout encoders (kernels in cpp/kernels/dropout.metal); the uint8 mask is the state.
#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/dropout.inc"

}  // namespace metalnn::metal
