// Softmax / log-softmax over the channel axis on CUDA, forward and gradient.
#pragma once
#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/softmax.inc"

}  // namespace metalnn::cuda
