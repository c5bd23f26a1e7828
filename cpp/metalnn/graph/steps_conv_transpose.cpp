#include "metalnn/graph/steps_conv_transpose.h"

#include "metalnn/core/error.h"

namespace metalnn::graph::steps {
namespace {

const Tensor& param(const ParameterRef& p) {
  if (!p->value.defined()) fail(ErrorKind::Runtime, "graph", "parameter '", p->name, "' is not loaded");
  return p->value;
}

Tensor optional_param(const ParameterRef& p) { return p ? param(p) : Tensor(); }

Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;
  s.label = label;
  s.run = std::move(run);
  return s;
}

}  // namespace

Step conv_transpose2d_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                              const ConvTranspose2dDescriptor& d, const NeuronDescriptor& neuron, int pre) {
  return make(label, [=](Frame& f) {
    Tensor z;
    f.slots[(size_t)y] = metalnn::conv_transpose2d_forward(slot(f, x, "input"), param(w), optional_param(b), d,
                                                           neuron, pre >= 0 ? &z : nullptr);
    if (pre >= 0) f.slots[(size_t)pre] = z;
  });
}

Step conv_transpose2d_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                                     const ConvTranspose2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)dx] = metalnn::conv_transpose2d_backward_input(slot(f, dy, "input"), param(w), input_shape, d);
  });
}

Step conv_transpose2d_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape,
                                      const ConvTranspose2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)dw] =
        metalnn::conv_transpose2d_backward_weight(slot(f, dy, "input"), slot(f, x, "input"), weight_shape, d);
  });
}

Step conv_transpose2d_backward_bias(const std::string& label, int dy, int db) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)db] = metalnn::conv_transpose2d_backward_bias(slot(f, dy, "input"));
  });
}

}  // namespace metalnn::graph::steps
