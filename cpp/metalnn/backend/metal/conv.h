// Convolution encoders (kernels in cpp/kernels/conv.metal): implicit GEMMs in 32x32 tiles,
// one group per grid z. ops/conv.cpp calls these in the Metal branch of dispatch().
#pragma once
#include "kernels/conv_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/conv.inc"

// db[o] = sum over images and positions of dy[n, o]; one threadgroup per output channel.
void conv2d_backward_bias(const Tensor& dy, const Tensor& db, const MnnConv2dParams& p);

}  // namespace metalnn::metal
