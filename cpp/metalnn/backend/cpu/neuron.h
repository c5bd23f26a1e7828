// Neuron and PReLU kernels on the CPU.
#pragma once
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/neuron.inc"

// In-place on a float32 block (used by fused bias + neuron epilogues).
void neuron_forward_block(const float* x, float* y, int64_t n, const MnnNeuronParams& p);

}  // namespace metalnn::cpu
