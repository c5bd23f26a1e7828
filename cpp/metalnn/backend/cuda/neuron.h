// Neuron forward/backward on CUDA (all MnnNeuronType values; float32 and float16 storage).
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p);
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p);

}  // namespace metalnn::cuda
