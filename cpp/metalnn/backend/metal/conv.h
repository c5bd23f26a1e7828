// Convolution encoders (kernels in cpp/kernels/conv.metal): implicit GEMMs in 32x32 tiles,
// one group per grid z. Same shapes as cpu::conv2d_*; ops/conv.cpp calls these in the
// Metal branch of dispatch().
#pragma once
#include "kernels/conv_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// y = f(z), z = conv(x, w) + bias; pre (undefined: not kept) receives z. bias may be
// undefined when p.has_bias == 0.
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const MnnConv2dParams& p, const MnnNeuronParams& neuron, const Tensor& pre);
void conv2d_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p);
void conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p);
// db[o] = sum over images and positions of dy[n, o]; one threadgroup per output channel.
void conv2d_backward_bias(const Tensor& dy, const Tensor& db, const MnnConv2dParams& p);

}  // namespace metalnn::metal
