#include "metalnn/graph/steps_normalization.h"

#include "metalnn/core/error.h"

namespace metalnn::graph::steps {
namespace {

const Tensor& in(const Frame& f, int i) { return slot(f, i, "input"); }

const Tensor& param(const ParameterRef& p) {
  if (!p || !p->value.defined())
    fail(ErrorKind::Runtime, "graph", "parameter '", p ? p->name : std::string("?"), "' is not loaded");
  return p->value;
}

void put(Frame& f, int i, const Tensor& t) {
  if (i >= 0) f.slots[(size_t)i] = t;
}

Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;  // fields set by name: the program fills the rest (releases, outputs)
  s.label = label;
  s.run = std::move(run);
  return s;
}

}  // namespace

Step batch_norm_forward(const std::string& label, int x, int y, int state, ParameterRef gamma, ParameterRef beta,
                        ParameterRef running_mean, ParameterRef running_var, bool training, double momentum,
                        double epsilon) {
  return make(label, [=](Frame& f) {
    Tensor rm = running_mean ? param(running_mean) : Tensor(), rv = running_var ? param(running_var) : Tensor();
    auto [out, s] = metalnn::batch_norm_forward(in(f, x), param(gamma), param(beta), rm, rv, training, momentum,
                                                epsilon);
    put(f, y, out);
    if (state >= 0) f.states[(size_t)state] = s;
  });
}

Step batch_norm_backward(const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx, int dgamma,
                         int dbeta) {
  return make(label, [=](Frame& f) {
    auto g = metalnn::batch_norm_backward(in(f, dy), in(f, x), param(gamma), f.states[(size_t)state]);
    put(f, dx, g.dx);
    put(f, dgamma, g.dgamma);
    put(f, dbeta, g.dbeta);
  });
}

Step group_norm_forward(const std::string& label, int x, int y, int state, ParameterRef gamma, ParameterRef beta,
                        int64_t groups, double epsilon, const char* op) {
  return make(label, [=](Frame& f) {
    const Tensor& xt = in(f, x);
    // instance norm: one group per channel of this batch's input.
    int64_t g = groups > 0 ? groups : (xt.ndim() >= 2 ? xt.dim(1) : 1);
    auto [out, s] = metalnn::group_norm_forward(xt, param(gamma), param(beta), g, epsilon, op);
    put(f, y, out);
    if (state >= 0) f.states[(size_t)state] = s;
  });
}

Step group_norm_backward(const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx, int dgamma,
                         int dbeta, const char* op) {
  return make(label, [=](Frame& f) {
    auto g = metalnn::group_norm_backward(in(f, dy), in(f, x), param(gamma), f.states[(size_t)state], op);
    put(f, dx, g.dx);
    put(f, dgamma, g.dgamma);
    put(f, dbeta, g.dbeta);
  });
}

Step cross_channel_norm_forward(const std::string& label, int x, int y, const CrossChannelNormDescriptor& d) {
  return make(label, [=](Frame& f) { put(f, y, metalnn::cross_channel_norm_forward(in(f, x), d)); });
}

Step cross_channel_norm_backward(const std::string& label, int dy, int x, int dx, const CrossChannelNormDescriptor& d) {
  return make(label, [=](Frame& f) { put(f, dx, metalnn::cross_channel_norm_backward(in(f, dy), in(f, x), d)); });
}

}  // namespace metalnn::graph::steps
