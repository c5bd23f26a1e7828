// Max / average / dilated max / L2-norm pooling encoders (kernels in cpp/kernels/pooling.metal). Forward kernels
// run one thread per output element, backward kernels one per input element (gather).
#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/pooling.inc"

// Dilated max pooling's gradient: a gather over the forward's dilated windows.
void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p);

}  // namespace metalnn::metal
