// The bias + neuron epilogue of the transposed convolution, which runs as a second pass
// over the output (its products come from conv2d_backward_input).
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// t (N, C, H, W) holds the products. Writes z = t + bias[c] (bias may be undefined) back into
// t and y = f(z) into y; y may be t itself (z is then not kept). All tensors share t's dtype.
void conv_transpose2d_epilogue(const Tensor& t, const Tensor& bias, const MnnNeuronParams& neuron, const Tensor& y);

}  // namespace metalnn::cpu
