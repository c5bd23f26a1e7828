#include "metalnn/ops/neuron.h"

#include <cmath>

#include "metalnn/backend/cpu/neuron.h"
#include "metalnn/backend/cuda/neuron.h"
#include "metalnn/backend/metal/neuron.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

struct NeuronInfo {
  const char* name;
  float a, b, c;  // MPS defaults
};

const NeuronInfo kNeurons[MNN_NEURON_COUNT] = {
    {"none", 0, 0, 0},    {"relu", 0, 0, 0},     {"leaky_relu", 0.01f, 0, 0}, {"sigmoid", 0, 0, 0},
    {"hard_sigmoid", 0.2f, 0.5f, 0}, {"tanh", 1, 1, 0}, {"linear", 1, 0, 0}, {"absolute", 0, 0, 0},
    {"softplus", 1, 1, 0}, {"elu", 1, 0, 0},     {"relun", 0, 6, 0},          {"gelu", 0, 0, 0},
};

}  // namespace

const char* neuron_name(MnnNeuronType type) {
  return type < MNN_NEURON_COUNT ? kNeurons[type].name : "?";
}

NeuronDescriptor NeuronDescriptor::make(const std::string& name, std::optional<float> a,
                                        std::optional<float> b, std::optional<float> c, const char* op) {
  for (uint32_t t = 0; t < MNN_NEURON_COUNT; ++t) {
    if (name != kNeurons[t].name) continue;
    NeuronDescriptor d;
    d.type = (MnnNeuronType)t;
    d.a = a.value_or(kNeurons[t].a);
    d.b = b.value_or(kNeurons[t].b);
    d.c = c.value_or(kNeurons[t].c);
    check::finite(op, "a", d.a);
    check::finite(op, "b", d.b);
    check::finite(op, "c", d.c);
    return d;
  }
  std::string names;
  for (auto& n : kNeurons) names += (names.empty() ? "" : ", ") + std::string(n.name);
  fail(ErrorKind::Value, op, "type: unknown neuron '", name, "' (expected one of ", names, ")");
}

Tensor neuron_forward(const Tensor& x, const NeuronDescriptor& desc) {
  const char* op = "neuron_forward";
  check::floating(op, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::neuron_forward(x, y, desc.params()); },
           [&] { metal::neuron_forward(x, y, desc.params()); },
           cuda_kernel([&] { cuda::neuron_forward(x, y, desc.params()); }));
  return y;
}

Tensor neuron_backward(const Tensor& dy, const Tensor& x, const NeuronDescriptor& desc) {
  const char* op = "neuron_backward";
  check::floating(op, "x", x);
  check::like(op, "dy", dy, "x", x);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::neuron_backward(dy, x, dx, desc.params()); },
           [&] { metal::neuron_backward(dy, x, dx, desc.params()); },
           cuda_kernel([&] { cuda::neuron_backward(dy, x, dx, desc.params()); }));
  return dx;
}

}  // namespace metalnn
