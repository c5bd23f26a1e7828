#include "metalnn/graph/steps.h"

#include "metalnn/core/copy.h"
#include "metalnn/core/error.h"
#include "metalnn/ops/arithmetic.h"
#include "metalnn/ops/softmax.h"

namespace metalnn::graph::steps {
namespace {

Tensor& out(Frame& f, int i) { return f.slots[(size_t)i]; }
const Tensor& in(const Frame& f, int i) { return slot(f, i, "input"); }

const Tensor& param(const ParameterRef& p) {
  if (!p->value.defined()) fail(ErrorKind::Runtime, "graph", "parameter '", p->name, "' is not loaded");
  return p->value;
}

Tensor optional_param(const ParameterRef& p) { return p ? param(p) : Tensor(); }

Step make(const std::string& label, std::function<void(Frame&)> run) { return Step{label, std::move(run), {}, {}, {}}; }

}  // namespace

Step conv2d_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                    const Conv2dDescriptor& d, const NeuronDescriptor& neuron, int pre) {
  return make(label, [=](Frame& f) {
    Tensor z;
    out(f, y) = metalnn::conv2d_forward(in(f, x), param(w), optional_param(b), d, neuron, pre >= 0 ? &z : nullptr);
    if (pre >= 0) out(f, pre) = z;
  });
}

Step fully_connected_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                             const FullyConnectedDescriptor& d, const NeuronDescriptor& neuron, int pre) {
  return make(label, [=](Frame& f) {
    Tensor z;
    out(f, y) = metalnn::fully_connected_forward(in(f, x), param(w), optional_param(b), d, neuron,
                                                 pre >= 0 ? &z : nullptr);
    if (pre >= 0) out(f, pre) = z;
  });
}

Step neuron_forward(const std::string& label, int x, int y, const NeuronDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::neuron_forward(in(f, x), d); });
}

Step max_pool2d_forward(const std::string& label, int x, int y, int state, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    auto [result, s] = metalnn::max_pool2d_forward(in(f, x), d);
    out(f, y) = result;
    f.states[(size_t)state] = s;
  });
}

Step avg_pool2d_forward(const std::string& label, int x, int y, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::avg_pool2d_forward(in(f, x), d); });
}

Step copy_slot(const std::string& label, int x, int y) {
  return make(label, [=](Frame& f) { out(f, y) = in(f, x); });
}

Step softmax_forward(const std::string& label, int x, int y, bool log) {
  return make(label, [=](Frame& f) {
    out(f, y) = log ? metalnn::log_softmax_forward(in(f, x)) : metalnn::softmax_forward(in(f, x));
  });
}

Step softmax_cross_entropy_forward(const std::string& label, int logits, int labels, int weights, int loss,
                                   int state, const SoftmaxCrossEntropyDescriptor& d) {
  return make(label, [=](Frame& f) {
    Tensor w = weights >= 0 ? f.slots[(size_t)weights] : Tensor();
    auto [l, s] = metalnn::softmax_cross_entropy_forward(in(f, logits), in(f, labels), w, d);
    out(f, loss) = l;
    f.states[(size_t)state] = s;
  });
}

Step add(const std::string& label, int a, int b, int y) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::add_forward(in(f, a), in(f, b)); });
}

Step conv2d_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                           const Conv2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    out(f, dx) = metalnn::conv2d_backward_input(in(f, dy), param(w), input_shape, d);
  });
}

Step conv2d_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape,
                            const Conv2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    out(f, dw) = metalnn::conv2d_backward_weight(in(f, dy), in(f, x), weight_shape, d);
  });
}

Step conv2d_backward_bias(const std::string& label, int dy, int db) {
  return make(label, [=](Frame& f) { out(f, db) = metalnn::conv2d_backward_bias(in(f, dy)); });
}

Step fully_connected_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                                    const FullyConnectedDescriptor& d) {
  return make(label, [=](Frame& f) {
    out(f, dx) = metalnn::fully_connected_backward_input(in(f, dy), param(w), input_shape, d);
  });
}

Step fully_connected_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape) {
  return make(label, [=](Frame& f) {
    out(f, dw) = metalnn::fully_connected_backward_weight(in(f, dy), in(f, x), weight_shape);
  });
}

Step fully_connected_backward_bias(const std::string& label, int dy, int db) {
  return make(label, [=](Frame& f) { out(f, db) = metalnn::fully_connected_backward_bias(in(f, dy)); });
}

Step neuron_backward(const std::string& label, int dy, int x, int dx, const NeuronDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::neuron_backward(in(f, dy), in(f, x), d); });
}

Step max_pool2d_backward(const std::string& label, int dy, int state, int dx) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::max_pool2d_backward(in(f, dy), f.states[(size_t)state]); });
}

Step avg_pool2d_backward(const std::string& label, int dy, int dx, Shape input_shape, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::avg_pool2d_backward(in(f, dy), input_shape, d); });
}

Step dropout_backward(const std::string& label, int dy, int state, int dx) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::dropout_backward(in(f, dy), f.states[(size_t)state]); });
}

Step softmax_backward(const std::string& label, int dy, int y, int dx, bool log) {
  return make(label, [=](Frame& f) {
    out(f, dx) = log ? metalnn::log_softmax_backward(in(f, dy), in(f, y)) : metalnn::softmax_backward(in(f, dy), in(f, y));
  });
}

Step softmax_cross_entropy_backward(const std::string& label, int state, int dlogits) {
  return make(label, [=](Frame& f) {
    // The loss is the graph's end: d(loss)/d(loss) = 1, on the device the loss lives on.
    const auto& st = state_as<SoftmaxCrossEntropyState>(f.states[(size_t)state], "graph", "softmax_cross_entropy_forward");
    Tensor one = Tensor::empty({}, DType::float32);
    *one.data<float>() = 1.f;
    if (st.probs.device() != one.device()) one = to_device(one, st.probs.device(), "graph");
    out(f, dlogits) = metalnn::softmax_cross_entropy_backward(f.states[(size_t)state], one);
  });
}

namespace {
// Gathers the tensors of an update: weights, gradients and the i-th state tensor of each target.
struct Gathered {
  std::vector<Tensor> values, grads;
  std::vector<std::vector<Tensor>> state;
};

Gathered gather(const Frame& f, const std::vector<UpdateTarget>& targets, size_t num_state) {
  Gathered g;
  g.state.resize(num_state);
  for (const auto& t : targets) {
    g.values.push_back(param(t.value));
    g.grads.push_back(in(f, t.gradient_slot));
    for (size_t i = 0; i < num_state; ++i)
      g.state[i].push_back(i < t.state.size() && t.state[i] ? optional_param(t.state[i]) : Tensor());
  }
  // An optimizer without a given state (SGD without momentum, Adam without AMSGrad's
  // v_max) takes an empty list for it.
  for (auto& list : g.state) {
    bool any = false;
    for (auto& t : list) any = any || t.defined();
    if (!any) list.clear();
  }
  return g;
}
}  // namespace

Step sgd_update(const std::string& label, std::vector<UpdateTarget> targets, const SgdDescriptor& d) {
  return make(label, [=](Frame& f) {
    auto g = gather(f, targets, 1);
    metalnn::sgd_step_many(g.values, g.grads, g.state[0], d);
  });
}

Step rmsprop_update(const std::string& label, std::vector<UpdateTarget> targets, const RmsPropDescriptor& d) {
  return make(label, [=](Frame& f) {
    auto g = gather(f, targets, 1);
    metalnn::rmsprop_step_many(g.values, g.grads, g.state[0], d);
  });
}

}  // namespace metalnn::graph::steps
