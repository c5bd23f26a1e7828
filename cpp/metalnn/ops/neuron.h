// Neurons (elementwise activations): forward y = f(x), gradient dx = dy * f'(x).
#pragma once
#include <optional>
#include <string>

#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct NeuronDescriptor {
  MnnNeuronType type = MNN_NEURON_NONE;
  float a = 0.f, b = 0.f, c = 0.f;

  // Parses a name ("relu", "leaky_relu", ...); unset coefficients take the MPS defaults.
  static NeuronDescriptor make(const std::string& name, std::optional<float> a = {},
                               std::optional<float> b = {}, std::optional<float> c = {},
                               const char* op = "neuron");
  MnnNeuronParams params() const { return MnnNeuronParams{(uint32_t)type, a, b, c}; }
};

const char* neuron_name(MnnNeuronType type);

Tensor neuron_forward(const Tensor& x, const NeuronDescriptor& desc);
// dx = dy * f'(x); x is the forward input.
Tensor neuron_backward(const Tensor& dy, const Tensor& x, const NeuronDescriptor& desc);

// PReLU with learned per-channel slopes (MPSCNNNeuronPReLU): x is (N, C, ...) of rank >= 2,
// slopes (C,) of x's dtype and device. y = x >= 0 ? x : slopes[c] * x.
Tensor prelu_forward(const Tensor& x, const Tensor& slopes);
// dx = dy * (x >= 0 ? 1 : slopes[c]).
Tensor prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes);
// dslopes[c] = sum over every (n, ...) of dy * (x >= 0 ? 0 : x), shape (C,).
Tensor prelu_backward_slopes(const Tensor& dy, const Tensor& x);

}  // namespace metalnn
