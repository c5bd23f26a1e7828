#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p);
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p);

// In-place on a float32 block (used by fused bias + neuron epilogues).
void neuron_forward_block(const float* x, float* y, int64_t n, const MnnNeuronParams& p);

// PReLU over x as (outer, channels, inner); slopes (channels,).
void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p);
void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p);
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p);

}  // namespace metalnn::cpu
