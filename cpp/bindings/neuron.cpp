#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps.h"
#include "metalnn/graph/steps_neuron.h"
#include "metalnn/ops/neuron.h"
#include "program_steps.h"

namespace metalnn::py_bind {

namespace {

using graph::ParameterRef;
using graph::Program;

// Graph steps: neuron steps that carry c (power, exponential, logarithm; graph.cpp's
// add_neuron_* take a and b only -- these are overloads with c), and PReLU.
void bind_neuron_steps() {
  def_program_step("add_neuron_forward", [](Program& p, const std::string& label, int x, int y,
                                            const std::string& type, std::optional<float> a,
                                            std::optional<float> b, std::optional<float> c) {
    p.add(graph::steps::neuron_forward(label, x, y, NeuronDescriptor::make(type, a, b, c, "graph")));
  });
  def_program_step("add_neuron_backward", [](Program& p, const std::string& label, int dy, int x, int dx,
                                             const std::string& type, std::optional<float> a,
                                             std::optional<float> b, std::optional<float> c) {
    p.add(graph::steps::neuron_backward(label, dy, x, dx, NeuronDescriptor::make(type, a, b, c, "graph")));
  });
  def_program_step("add_prelu_forward", [](Program& p, const std::string& label, int x, int y, ParameterRef s) {
    p.add(graph::steps::prelu_forward(label, x, y, s));
  });
  def_program_step("add_prelu_backward_input",
                   [](Program& p, const std::string& label, int dy, int x, int dx, ParameterRef s) {
                     p.add(graph::steps::prelu_backward_input(label, dy, x, dx, s));
                   });
  def_program_step("add_prelu_backward_slopes",
                   [](Program& p, const std::string& label, int dy, int x, int ds, ParameterRef s) {
                     p.add(graph::steps::prelu_backward_slopes(label, dy, x, ds, s));
                   });
}

}  // namespace

void bind_neuron(py::module_& ops) {
  ops.def("neuron_forward",
          [](py::handle x, const std::string& type, std::optional<float> a, std::optional<float> b,
             std::optional<float> c) {
            Call call("neuron_forward");
            Tensor tx = call.in(x, "x");
            auto desc = NeuronDescriptor::make(type, a, b, c, call.op());
            return call.out(without_gil([&] { return neuron_forward(tx, desc); }));
          },
          py::arg("x"), py::arg("type"), py::arg("a") = py::none(), py::arg("b") = py::none(),
          py::arg("c") = py::none());
  ops.def("neuron_backward",
          [](py::handle dy, py::handle x, const std::string& type, std::optional<float> a,
             std::optional<float> b, std::optional<float> c) {
            Call call("neuron_backward");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            auto desc = NeuronDescriptor::make(type, a, b, c, call.op());
            return call.out(without_gil([&] { return neuron_backward(tdy, tx, desc); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("type"), py::arg("a") = py::none(), py::arg("b") = py::none(),
          py::arg("c") = py::none());
  ops.def("prelu_forward",
          [](py::handle x, py::handle slopes) {
            Call call("prelu_forward");
            Tensor tx = call.in(x, "x"), ts = call.in(slopes, "slopes");
            return call.out(without_gil([&] { return prelu_forward(tx, ts); }));
          },
          py::arg("x"), py::arg("slopes"));
  ops.def("prelu_backward_input",
          [](py::handle dy, py::handle x, py::handle slopes) {
            Call call("prelu_backward_input");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x"), ts = call.in(slopes, "slopes");
            return call.out(without_gil([&] { return prelu_backward_input(tdy, tx, ts); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("slopes"));
  ops.def("prelu_backward_slopes",
          [](py::handle dy, py::handle x) {
            Call call("prelu_backward_slopes");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            return call.out(without_gil([&] { return prelu_backward_slopes(tdy, tx); }));
          },
          py::arg("dy"), py::arg("x"));
  bind_neuron_steps();
}

}  // namespace metalnn::py_bind
