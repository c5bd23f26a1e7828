// 2-D max / average / dilated max / L2-norm pooling on CUDA, forward and gradient (float32 and float16 storage).
#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/pooling.inc"

// Dilated max pooling's gradient: a gather over the forward's dilated windows.
void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p);

}  // namespace metalnn::cuda
