// Neuron encoders (kernels in cpp/kernels/neuron.metal). Plain C++: ops/ calls these
// inside the Metal branch of dispatch().
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p);
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p);

void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p);
void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p);
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p);

}  // namespace metalnn::metal
