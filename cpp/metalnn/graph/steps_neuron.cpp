#include "metalnn/graph/steps_neuron.h"

#include "metalnn/core/error.h"

namespace metalnn::graph::steps {
namespace {

// The slopes parameter as the op's (C,) vector, whatever shape the data source stores.
Tensor slopes_of(const ParameterRef& p) {
  if (!p->value.defined()) fail(ErrorKind::Runtime, "graph", "parameter '", p->name, "' is not loaded");
  return p->value.reshape({p->value.numel()});
}

Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;
  s.label = label;
  s.run = std::move(run);
  return s;
}

}  // namespace

Step prelu_forward(const std::string& label, int x, int y, ParameterRef slopes) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)y] = metalnn::prelu_forward(slot(f, x, "input"), slopes_of(slopes));
  });
}

Step prelu_backward_input(const std::string& label, int dy, int x, int dx, ParameterRef slopes) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)dx] = metalnn::prelu_backward_input(slot(f, dy, "input"), slot(f, x, "input"), slopes_of(slopes));
  });
}

Step prelu_backward_slopes(const std::string& label, int dy, int x, int dslopes, ParameterRef slopes) {
  return make(label, [=](Frame& f) {
    Tensor ds = metalnn::prelu_backward_slopes(slot(f, dy, "input"), slot(f, x, "input"));
    // The optimizer updates the parameter with a gradient of its own shape.
    f.slots[(size_t)dslopes] = ds.reshape(slopes->value.shape());
  });
}

}  // namespace metalnn::graph::steps
