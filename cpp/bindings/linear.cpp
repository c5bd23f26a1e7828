#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/core/error.h"
#include "metalnn/ops/conv.h"  // layer::fused_neuron
#include "metalnn/ops/linear.h"

namespace metalnn::py_bind {

using Ints = std::vector<int64_t>;

void bind_linear(py::module_& ops) {
  // neuron: fused epilogue y = f(x w^T + bias); return_preactivation also returns z = x w^T + bias.
  ops.def("fully_connected_forward",
          [](py::handle x, py::handle weight, py::handle bias, const std::string& accumulation,
             const std::optional<std::string>& neuron, std::optional<float> neuron_a, std::optional<float> neuron_b,
             bool return_preactivation) -> py::object {
            Call call("fully_connected_forward");
            Tensor tx = call.in(x, "x"), tw = call.in(weight, "weight"), tb = call.in_opt(bias, "bias"), z;
            auto desc = FullyConnectedDescriptor::make(accumulation, call.op());
            auto fn = layer::fused_neuron(neuron, neuron_a, neuron_b, call.op());
            Tensor* pre = return_preactivation ? &z : nullptr;
            Tensor y = without_gil([&] { return fully_connected_forward(tx, tw, tb, desc, fn, pre); });
            if (!pre) return call.out(y);
            return py::make_tuple(call.out(y), call.out(z));
          },
          py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("accumulation") = "float",
          py::arg("neuron") = py::none(), py::arg("neuron_a") = py::none(), py::arg("neuron_b") = py::none(),
          py::arg("return_preactivation") = false);
  ops.def("fully_connected_backward_input",
          [](py::handle dy, py::handle weight, const Ints& input_shape, const std::string& accumulation) {
            Call call("fully_connected_backward_input");
            Tensor tdy = call.in(dy, "dy"), tw = call.in(weight, "weight");
            auto desc = FullyConnectedDescriptor::make(accumulation, call.op());
            return call.out(
                without_gil([&] { return fully_connected_backward_input(tdy, tw, input_shape, desc); }));
          },
          py::arg("dy"), py::arg("weight"), py::arg("input_shape"), py::arg("accumulation") = "float");
  // weight_shape None (an empty list here) means (O, F).
  ops.def("fully_connected_backward_weight",
          [](py::handle dy, py::handle x, std::optional<Ints> weight_shape) {
            Call call("fully_connected_backward_weight");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            if (weight_shape && weight_shape->empty())
              fail(ErrorKind::Value, call.op(), "weight_shape must not be empty");
            Ints ws = weight_shape.value_or(Ints{});
            return call.out(without_gil([&] { return fully_connected_backward_weight(tdy, tx, ws); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("weight_shape") = py::none());
  ops.def("fully_connected_backward_bias",
          [](py::handle dy) {
            Call call("fully_connected_backward_bias");
            Tensor tdy = call.in(dy, "dy");
            return call.out(without_gil([&] { return fully_connected_backward_bias(tdy); }));
          },
          py::arg("dy"));
}

}  // namespace metalnn::py_bind
