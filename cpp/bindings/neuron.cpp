#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/ops/neuron.h"

namespace metalnn::py_bind {

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
}

}  // namespace metalnn::py_bind
