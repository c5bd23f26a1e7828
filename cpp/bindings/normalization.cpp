// Normalization kernels (batch / group / instance / layer / cross-channel) and their graph steps.
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "convert.h"
#include "families.h"
#include "metalnn/core/copy.h"
#include "metalnn/graph/steps_normalization.h"
#include "metalnn/ops/normalization.h"
#include "program_steps.h"

namespace metalnn::py_bind {

namespace {

std::shared_ptr<State> state_arg(py::handle h, const char* op, const char* expected) {
  if (h.is_none()) return nullptr;  // state_as names what is missing
  if (!py::isinstance<State>(h))
    fail(ErrorKind::Type, op, "state must be a State from ", expected, ", got ",
         std::string(py::str(py::type::of(h).attr("__name__"))));
  return h.cast<std::shared_ptr<State>>();
}

py::array host(const Tensor& t) { return to_numpy(to_host(t, "normalization state")); }

py::tuple gradients(const Call& call, const NormGradients& g) {
  return py::make_tuple(call.out(g.dx), call.out(g.dgamma), call.out(g.dbeta));
}

// Names that outlive the graph steps capturing them.
const char* forward_name(const std::string& kind) {
  if (kind == "instance") return "instance_norm_forward";
  if (kind == "layer") return "layer_norm_forward";
  if (kind == "group") return "group_norm_forward";
  fail(ErrorKind::Value, "graph", "normalization kind must be 'group', 'instance' or 'layer', got '", kind, "'");
}

const char* backward_name(const std::string& kind) {
  if (kind == "instance") return "instance_norm_backward";
  if (kind == "layer") return "layer_norm_backward";
  return "group_norm_backward";
}

// One forward / backward pair of the group family under its own op names.
void bind_group_family(py::module_& ops, const char* fwd, const char* bwd, bool takes_groups) {
  ops.def(fwd,
          [fwd, takes_groups](py::handle x, py::handle gamma, py::handle beta, int64_t groups, double epsilon) {
            Call call(fwd);
            Tensor tx = call.in(x, "x"), tg = call.in(gamma, "gamma"), tb = call.in(beta, "beta");
            // instance norm: a group per channel; layer norm: one group.
            int64_t g = takes_groups ? groups : (std::string(fwd) == "instance_norm_forward" && tx.ndim() >= 2
                                                     ? tx.dim(1) : 1);
            auto [y, state] = without_gil([&] { return group_norm_forward(tx, tg, tb, g, epsilon, fwd); });
            return py::make_tuple(call.out(y), py::cast(state));
          },
          py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("groups") = 1, py::arg("epsilon") = 1e-5);
  ops.def(bwd,
          [bwd](py::handle dy, py::handle x, py::handle gamma, py::handle state) {
            Call call(bwd);
            auto s = state_arg(state, bwd, "group_norm_forward, instance_norm_forward or layer_norm_forward");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x"), tg = call.in(gamma, "gamma");
            return gradients(call, without_gil([&] { return group_norm_backward(tdy, tx, tg, s, bwd); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("state"));
}

}  // namespace

void bind_normalization(py::module_& ops) {
  py::class_<BatchNormState, State, std::shared_ptr<BatchNormState>>(
      ops, "BatchNormState", "The statistics batch_norm_forward normalised with, for batch_norm_backward.")
      .def_property_readonly("mean", [](const BatchNormState& s) { return host(s.mean); },
                             "float32 (C,): the batch mean (training) or the running mean")
      .def_property_readonly("variance", [](const BatchNormState& s) { return host(s.variance); },
                             "float32 (C,): the biased batch variance (training) or the running variance")
      .def_property_readonly("inv_std", [](const BatchNormState& s) {
            py::array_t<float> v = host(s.variance);
            py::array_t<float> out(v.size());
            for (py::ssize_t i = 0; i < v.size(); ++i)
              out.mutable_data()[i] = (float)(1.0 / std::sqrt((double)v.data()[i] + (double)s.epsilon));
            return out;
          }, "float32 (C,): 1 / sqrt(variance + epsilon)")
      .def_property_readonly("training", [](const BatchNormState& s) { return s.batch_statistics; })
      .def_property_readonly("epsilon", [](const BatchNormState& s) { return s.epsilon; })
      .def_property_readonly("input_shape", [](const BatchNormState& s) { return py::tuple(py::cast(s.input_shape)); })
      .def_property_readonly("dtype", [](const BatchNormState& s) { return std::string(dtype_name(s.dtype)); });

  py::class_<GroupNormState, State, std::shared_ptr<GroupNormState>>(
      ops, "GroupNormState", "Per-(sample, group) statistics of group/instance/layer norm, for the gradient.")
      .def_property_readonly("mean", [](const GroupNormState& s) { return host(s.mean); }, "float32 (N, groups)")
      .def_property_readonly("inv_std", [](const GroupNormState& s) { return host(s.inv_std); },
                             "float32 (N, groups): 1 / sqrt(variance + epsilon)")
      .def_property_readonly("groups", [](const GroupNormState& s) { return s.groups; })
      .def_property_readonly("epsilon", [](const GroupNormState& s) { return s.epsilon; })
      .def_property_readonly("input_shape", [](const GroupNormState& s) { return py::tuple(py::cast(s.input_shape)); })
      .def_property_readonly("dtype", [](const GroupNormState& s) { return std::string(dtype_name(s.dtype)); });

  ops.def("batch_norm_forward",
          [](py::handle x, py::handle gamma, py::handle beta, py::handle running_mean, py::handle running_var,
             bool training, double momentum, double epsilon) {
            Call call("batch_norm_forward");
            Tensor tx = call.in(x, "x"), tg = call.in(gamma, "gamma"), tb = call.in(beta, "beta");
            Tensor rm = running_mean.is_none() ? Tensor() : call.in(running_mean, "running_mean", true);
            Tensor rv = running_var.is_none() ? Tensor() : call.in(running_var, "running_var", true);
            auto [y, state] = without_gil(
                [&] { return batch_norm_forward(tx, tg, tb, rm, rv, training, momentum, epsilon); });
            return py::make_tuple(call.out(y), py::cast(state));
          },
          py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean") = py::none(),
          py::arg("running_var") = py::none(), py::arg("training") = true, py::arg("momentum") = 0.1,
          py::arg("epsilon") = 1e-5);
  ops.def("batch_norm_backward",
          [](py::handle dy, py::handle x, py::handle gamma, py::handle state) {
            Call call("batch_norm_backward");
            auto s = state_arg(state, call.op(), "batch_norm_forward");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x"), tg = call.in(gamma, "gamma");
            return gradients(call, without_gil([&] { return batch_norm_backward(tdy, tx, tg, s); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("state"));

  bind_group_family(ops, "group_norm_forward", "group_norm_backward", true);
  bind_group_family(ops, "instance_norm_forward", "instance_norm_backward", false);
  bind_group_family(ops, "layer_norm_forward", "layer_norm_backward", false);

  ops.def("cross_channel_norm_forward",
          [](py::handle x, int64_t size, double alpha, double beta, double delta) {
            Call call("cross_channel_norm_forward");
            Tensor tx = call.in(x, "x");
            auto d = CrossChannelNormDescriptor::make(size, alpha, beta, delta, call.op());
            return call.out(without_gil([&] { return cross_channel_norm_forward(tx, d); }));
          },
          py::arg("x"), py::arg("size") = 5, py::arg("alpha") = 1e-4, py::arg("beta") = 0.75,
          py::arg("delta") = 1.0);
  ops.def("cross_channel_norm_backward",
          [](py::handle dy, py::handle x, int64_t size, double alpha, double beta, double delta) {
            Call call("cross_channel_norm_backward");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            auto d = CrossChannelNormDescriptor::make(size, alpha, beta, delta, call.op());
            return call.out(without_gil([&] { return cross_channel_norm_backward(tdy, tx, d); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("size") = 5, py::arg("alpha") = 1e-4, py::arg("beta") = 0.75,
          py::arg("delta") = 1.0);

  // Graph steps (metalnn.graph.nodes_normalization emits them).
  using graph::ParameterRef;
  using graph::Program;
  def_program_step("add_batch_norm_forward",
                   [](Program& p, const std::string& label, int x, int y, int state, ParameterRef gamma,
                      ParameterRef beta, std::optional<ParameterRef> rm, std::optional<ParameterRef> rv,
                      bool training, double momentum, double epsilon) {
                     p.add(graph::steps::batch_norm_forward(label, x, y, state, gamma, beta, rm.value_or(nullptr),
                                                            rv.value_or(nullptr), training, momentum, epsilon));
                   });
  def_program_step("add_batch_norm_backward",
                   [](Program& p, const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx,
                      int dgamma, int dbeta) {
                     p.add(graph::steps::batch_norm_backward(label, dy, x, state, gamma, dx, dgamma, dbeta));
                   });
  def_program_step("add_group_norm_forward",
                   [](Program& p, const std::string& label, int x, int y, int state, ParameterRef gamma,
                      ParameterRef beta, int64_t groups, double epsilon, const std::string& kind) {
                     p.add(graph::steps::group_norm_forward(label, x, y, state, gamma, beta, groups, epsilon,
                                                            forward_name(kind)));
                   });
  def_program_step("add_group_norm_backward",
                   [](Program& p, const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx,
                      int dgamma, int dbeta, const std::string& kind) {
                     forward_name(kind);  // validates kind
                     p.add(graph::steps::group_norm_backward(label, dy, x, state, gamma, dx, dgamma, dbeta,
                                                             backward_name(kind)));
                   });
  def_program_step("add_cross_channel_norm_forward",
                   [](Program& p, const std::string& label, int x, int y, int64_t size, double alpha, double beta,
                      double delta) {
                     p.add(graph::steps::cross_channel_norm_forward(
                         label, x, y, CrossChannelNormDescriptor::make(size, alpha, beta, delta, "graph")));
                   });
  def_program_step("add_cross_channel_norm_backward",
                   [](Program& p, const std::string& label, int dy, int x, int dx, int64_t size, double alpha,
                      double beta, double delta) {
                     p.add(graph::steps::cross_channel_norm_backward(
                         label, dy, x, dx, CrossChannelNormDescriptor::make(size, alpha, beta, delta, "graph")));
                   });
}

}  // namespace metalnn::py_bind
