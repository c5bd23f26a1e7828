// Neuron forward/backward on CUDA and PReLU (all MnnNeuronType values; float32 and float16 storage).
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p);
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p);

// PReLU over x as (outer, channels, inner); slopes (channels,).
void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p);
void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p);
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p);

// Layer epilogue: z = acc + bias[o], y = neuron(z) (z may be null); acc is float32 (N, O, P),
// or (O, N, P) when o_major. acc may alias y for float32 storage.
void bias_neuron_epilogue(const char* op, const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z,
                          int64_t N, int64_t O, int64_t P, bool o_major, const MnnNeuronParams& p);

}  // namespace metalnn::cuda
