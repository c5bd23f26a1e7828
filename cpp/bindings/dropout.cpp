// Dropout forward returns (y, state); the state keeps the mask for the gradient.
#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/core/error.h"
#include "metalnn/ops/dropout.h"

namespace metalnn::py_bind {
namespace {

// Any Python int in [0, 2^64); numpy integers too.
uint64_t parse_seed(const char* op, py::handle seed) {
  if (py::isinstance<py::bool_>(seed) || !py::hasattr(seed, "__index__"))
    fail(ErrorKind::Type, op, "seed must be an int, got ", std::string(py::str(py::type::of(seed).attr("__name__"))));
  py::int_ value = seed.attr("__index__")();
  unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    fail(ErrorKind::Value, op, "seed must be in [0, 2^64), got ", std::string(py::str(value)));
  }
  return (uint64_t)v;
}

}  // namespace

void bind_dropout(py::module_& ops) {
  py::class_<DropoutState, State, std::shared_ptr<DropoutState>>(
      ops, "DropoutState", "The mask dropout_forward drew, for dropout_backward.")
      .def_property_readonly("mask", [](const DropoutState& s) { return to_numpy(s.mask()); },
                             "uint8 array of the input's shape: 1 where kept, 0 where dropped (shares memory).")
      .def_property_readonly("keep_probability", &DropoutState::keep_probability)
      .def_property_readonly("seed", &DropoutState::seed)
      .def_property_readonly("shape", [](const DropoutState& s) { return py::tuple(py::cast(s.shape())); })
      .def("__repr__", [](const DropoutState& s) {
        return "DropoutState(shape=" + shape_str(s.shape()) + ", keep_probability=" +
               std::to_string(s.keep_probability()) + ", seed=" + std::to_string(s.seed()) + ")";
      });

  ops.def("dropout_forward",
          [](py::handle x, double keep_probability, py::handle seed) {
            Call call("dropout_forward");
            Tensor tx = call.in(x, "x");
            DropoutDescriptor d;
            d.keep_probability = keep_probability;
            d.seed = parse_seed(call.op(), seed);
            auto [y, state] = without_gil([&] { return dropout_forward(tx, d); });
            return py::make_tuple(call.out(y), py::cast(state));
          },
          py::arg("x"), py::arg("keep_probability") = 0.5, py::arg("seed") = 0);
  ops.def("dropout_backward",
          [](py::handle dy, py::handle state) {
            Call call("dropout_backward");
            Tensor tdy = call.in(dy, "dy");
            // Checked here so a non-state object gets a TypeError that names the op.
            if (!py::isinstance<State>(state))
              fail(ErrorKind::Type, call.op(), "state must be the DropoutState returned by dropout_forward, got ",
                   std::string(py::str(py::type::of(state).attr("__name__"))));
            auto st = state.cast<std::shared_ptr<State>>();
            return call.out(without_gil([&] { return dropout_backward(tdy, st); }));
          },
          py::arg("dy"), py::arg("state"));
}

}  // namespace metalnn::py_bind
