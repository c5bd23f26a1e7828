// Dropout on the CPU; the mask comes from the shared hash in kernels/dropout_params.h.
#pragma once
#include "kernels/dropout_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/dropout.inc"

}  // namespace metalnn::cpu
