// Neuron forward/backward on CUDA and PReLU (all MnnNeuronType values; float32 and float16 storage).
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

#include "metalnn/backend/kernels/neuron.inc"

// Layer epilogue: z = acc + bias[o], y = neuron(z) (z may be null); acc is float32 (N, O, P),
// or (O, N, P) when o_major. acc may alias y for float32 storage.
void bias_neuron_epilogue(const char* op, const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z,
                          int64_t N, int64_t O, int64_t P, bool o_major, const MnnNeuronParams& p);

}  // namespace metalnn::cuda
