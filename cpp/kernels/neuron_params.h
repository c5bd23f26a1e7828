// Neuron (activation) parameters shared by host code, MSL and CUDA: fixed-width
// fields only. The functions follow MPSCNNNeuronType (plus SiLU, Mish and SELU).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnNeuronType {
  MNN_NEURON_NONE = 0,          // y = x
  MNN_NEURON_RELU = 1,          // y = x >= 0 ? x : a * x   (a = 0)
  MNN_NEURON_LEAKY_RELU = 2,    // y = x >= 0 ? x : a * x   (a = 0.01)
  MNN_NEURON_SIGMOID = 3,       // y = 1 / (1 + exp(-x))
  MNN_NEURON_HARD_SIGMOID = 4,  // y = clamp(a * x + b, 0, 1)   (a = 0.2, b = 0.5)
  MNN_NEURON_TANH = 5,          // y = a * tanh(b * x)   (a = 1, b = 1)
  MNN_NEURON_LINEAR = 6,        // y = a * x + b   (a = 1, b = 0)
  MNN_NEURON_ABSOLUTE = 7,      // y = |x|
  MNN_NEURON_SOFTPLUS = 8,      // y = a * log(1 + exp(b * x))   (a = 1, b = 1)
  MNN_NEURON_ELU = 9,           // y = x >= 0 ? x : a * (exp(x) - 1)   (a = 1)
  MNN_NEURON_RELUN = 10,        // y = min(x >= 0 ? x : a * x, b)   (a = 0, b = 6)
  MNN_NEURON_GELU = 11,         // y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
  MNN_NEURON_SOFTSIGN = 12,     // y = x / (1 + |x|)
  MNN_NEURON_POWER = 13,        // y = (a * x + b) ^ c   (a = 1, b = 0, c = 2)
  MNN_NEURON_EXPONENTIAL = 14,  // y = c ^ (a * x + b)   (a = 1, b = 0, c = -1 meaning base e)
  MNN_NEURON_LOGARITHM = 15,    // y = log_c(a * x + b)   (a = 1, b = 0, c = -1 meaning base e)
  MNN_NEURON_SILU = 16,         // y = x * sigmoid(x)
  MNN_NEURON_MISH = 17,         // y = x * tanh(log(1 + exp(x)))
  MNN_NEURON_SELU = 18,         // y = b * (x >= 0 ? x : a * (exp(x) - 1))   (a = 1.6732632, b = 1.0507010)
  MNN_NEURON_COUNT = 19
};

struct MnnNeuronParams {
  uint32_t type;
  float a;
  float b;
  float c;
};

// PReLU (MPSCNNNeuronPReLU): y = x >= 0 ? x : slopes[channel] * x, x viewed as
// (outer, channels, inner) -- (N, C, H*W) for images, (N, C, 1) for matrices.
struct MnnPReLUParams {
  uint32_t outer;
  uint32_t channels;
  uint32_t inner;
  uint32_t pad0;
};
