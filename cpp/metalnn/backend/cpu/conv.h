// CPU convolution kernels. float32 (and float16 with float accumulation, widened per
// image) runs im2col + sgemm per image and group; half accumulation runs plain loops.
#pragma once
#include "kernels/conv_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// y = f(z), z = conv(x, w) + bias, f run per output row right after the image's products;
// pre (undefined: not kept) receives z. bias may be undefined when p.has_bias == 0. All
// tensors share x's dtype.
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const MnnConv2dParams& p, const MnnNeuronParams& neuron, const Tensor& pre);
void conv2d_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p);
void conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p);

}  // namespace metalnn::cpu
