// Neuron encoders (kernels in cpp/kernels/neuron.metal). Plain C++: ops/ calls these
// inside the Metal branch of dispatch().
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p);
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p);

}  // namespace metalnn::metal
