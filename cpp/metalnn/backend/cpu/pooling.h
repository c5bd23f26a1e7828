// Max / average / dilated max / L2-norm pooling on the CPU, forward and gradient.
#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// The dilated max pool's gradient here is max_pool2d_backward (argmax scatter).
#include "metalnn/backend/kernels/pooling.inc"

}  // namespace metalnn::cpu
