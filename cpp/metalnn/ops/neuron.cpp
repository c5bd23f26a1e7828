#include "metalnn/ops/neuron.h"

#include <cmath>
#include <utility>

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
    {"softsign", 0, 0, 0}, {"power", 1, 0, 2},   {"exponential", 1, 0, -1},   {"logarithm", 1, 0, -1},
    {"silu", 0, 0, 0},     {"mish", 0, 0, 0},
    {"selu", 1.6732632423543772f, 1.0507009873554805f, 0},  // alpha, lambda (Klambauer et al.)
};

// MPS: a base c of -1 means e; any other base must be positive (and not 1 for a logarithm).
void check_base(const char* op, const NeuronDescriptor& d) {
  if (d.type != MNN_NEURON_EXPONENTIAL && d.type != MNN_NEURON_LOGARITHM) return;
  if (d.c == -1.f) return;
  if (!(d.c > 0.f) || (d.type == MNN_NEURON_LOGARITHM && d.c == 1.f))
    fail(ErrorKind::Value, op, "c: the base of ", neuron_name(d.type), " must be positive",
         d.type == MNN_NEURON_LOGARITHM ? " and not 1" : "", " (or -1 for e), got ", d.c);
}

// x as (outer, channels, inner): channels on axis 1.
struct ChannelView {
  int64_t outer, channels, inner;
};

ChannelView check_prelu(const char* op, const Tensor& x, const Tensor& slopes) {
  check::floating(op, "x", x);
  if (x.ndim() < 2)
    fail(ErrorKind::Value, op, "expected x of rank >= 2 (N, C, ...), got shape ", shape_str(x.shape()));
  check::same_dtype(op, "slopes", slopes, "x", x);
  check::same_device(op, "slopes", slopes, "x", x);
  check::shape(op, "slopes", slopes, {x.shape()[1]});
  ChannelView v{x.shape()[0], x.shape()[1], 1};
  for (int i = 2; i < x.ndim(); ++i) v.inner *= x.shape()[i];
  return v;
}

MnnPReLUParams prelu_params(const char* op, const ChannelView& v) {
  using Extent = std::pair<const char*, int64_t>;
  for (const Extent& e : {Extent{"N", v.outer}, Extent{"C", v.channels}, Extent{"inner size", v.inner}})
    if (e.second > (int64_t)UINT32_MAX) fail(ErrorKind::Value, op, "x: ", e.first, " of ", e.second, " exceeds 2^32");
  return MnnPReLUParams{(uint32_t)v.outer, (uint32_t)v.channels, (uint32_t)v.inner, 0};
}

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
    check_base(op, d);
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

Tensor prelu_forward(const Tensor& x, const Tensor& slopes) {
  const char* op = "prelu_forward";
  auto p = prelu_params(op, check_prelu(op, x, slopes));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::prelu_forward(x, slopes, y, p); },
           [&] { metal::prelu_forward(x, slopes, y, p); },
           cuda_kernel([&] { cuda::prelu_forward(x, slopes, y, p); }));
  return y;
}

Tensor prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes) {
  const char* op = "prelu_backward_input";
  auto p = prelu_params(op, check_prelu(op, x, slopes));
  check::like(op, "dy", dy, "x", x);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::prelu_backward_input(dy, x, slopes, dx, p); },
           [&] { metal::prelu_backward_input(dy, x, slopes, dx, p); },
           cuda_kernel([&] { cuda::prelu_backward_input(dy, x, slopes, dx, p); }));
  return dx;
}

Tensor prelu_backward_slopes(const Tensor& dy, const Tensor& x) {
  const char* op = "prelu_backward_slopes";
  check::floating(op, "x", x);
  if (x.ndim() < 2)
    fail(ErrorKind::Value, op, "expected x of rank >= 2 (N, C, ...), got shape ", shape_str(x.shape()));
  check::like(op, "dy", dy, "x", x);
  ChannelView v{x.shape()[0], x.shape()[1], 1};
  for (int i = 2; i < x.ndim(); ++i) v.inner *= x.shape()[i];
  auto p = prelu_params(op, v);
  Tensor ds = Tensor::empty({v.channels}, x.dtype(), x.device());
  dispatch(op, x.device(), [&] { cpu::prelu_backward_slopes(dy, x, ds, p); },
           [&] { metal::prelu_backward_slopes(dy, x, ds, p); },
           cuda_kernel([&] { cuda::prelu_backward_slopes(dy, x, ds, p); }));
  return ds;
}

}  // namespace metalnn
