#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_pooling.h"
#include "metalnn/ops/pooling.h"
#include "program_steps.h"

namespace metalnn::py_bind {

namespace {

Pool2dDescriptor descriptor(py::handle kernel, py::handle stride, py::handle padding, bool count_include_pad,
                            const char* op) {
  auto k = int_list(kernel, op, "kernel_size");
  std::vector<int64_t> s;
  if (!stride.is_none()) s = int_list(stride, op, "stride");
  if (!stride.is_none() && s.empty()) fail(ErrorKind::Value, op, "stride must not be empty");
  return Pool2dDescriptor::make(k, s, int_list(padding, op, "padding"), count_include_pad, op);
}

Pool2dDescriptor dilated_descriptor(py::handle kernel, py::handle stride, py::handle padding, py::handle dilation,
                                    const char* op) {
  auto k = int_list(kernel, op, "kernel_size");
  std::vector<int64_t> s;
  if (!stride.is_none()) s = int_list(stride, op, "stride");
  if (!stride.is_none() && s.empty()) fail(ErrorKind::Value, op, "stride must not be empty");
  return Pool2dDescriptor::make_dilated(k, s, int_list(padding, op, "padding"), int_list(dilation, op, "dilation"),
                                        op);
}

std::shared_ptr<State> state_arg(py::handle h, const char* op) {
  if (h.is_none()) return nullptr;  // state_as names what is missing
  if (!py::isinstance<State>(h))
    fail(ErrorKind::Type, op, "state must be a State from max_pool2d_forward, got ",
         std::string(py::str(py::type::of(h).attr("__name__"))));
  return h.cast<std::shared_ptr<State>>();
}

}  // namespace

void bind_pooling(py::module_& ops) {
  py::class_<MaxPool2dState, State, std::shared_ptr<MaxPool2dState>>(
      ops, "MaxPool2dState", "Argmax of each max-pooling window, for max_pool2d_backward.")
      .def_property_readonly("argmax", [](const MaxPool2dState& s) { return to_numpy(s.argmax); },
                             "int32 (N, C, H_out, W_out): index h*W + w of each window's winner in its plane")
      .def_property_readonly("input_shape", [](const MaxPool2dState& s) { return py::tuple(py::cast(s.input_shape)); })
      .def_property_readonly("dtype", [](const MaxPool2dState& s) { return std::string(dtype_name(s.dtype)); });

  ops.def("max_pool2d_forward",
          [](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding) {
            Call call("max_pool2d_forward");
            Tensor tx = call.in(x, "x");
            auto desc = descriptor(kernel_size, stride, padding, true, call.op());
            auto [y, state] = without_gil([&] { return max_pool2d_forward(tx, desc); });
            return py::make_tuple(call.out(y), py::cast(state));
          },
          py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0);
  ops.def("max_pool2d_backward",
          [](py::handle dy, py::handle state) {
            Call call("max_pool2d_backward");
            auto s = state_arg(state, call.op());
            Tensor tdy = call.in(dy, "dy");
            return call.out(without_gil([&] { return max_pool2d_backward(tdy, s); }));
          },
          py::arg("dy"), py::arg("state"));
  ops.def("avg_pool2d_forward",
          [](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding, bool count_include_pad) {
            Call call("avg_pool2d_forward");
            Tensor tx = call.in(x, "x");
            auto desc = descriptor(kernel_size, stride, padding, count_include_pad, call.op());
            return call.out(without_gil([&] { return avg_pool2d_forward(tx, desc); }));
          },
          py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
          py::arg("count_include_pad") = true);
  ops.def("avg_pool2d_backward",
          [](py::handle dy, py::handle input_shape, py::handle kernel_size, py::handle stride, py::handle padding,
             bool count_include_pad) {
            Call call("avg_pool2d_backward");
            Tensor tdy = call.in(dy, "dy");
            auto shape = int_list(input_shape, call.op(), "input_shape");
            auto desc = descriptor(kernel_size, stride, padding, count_include_pad, call.op());
            return call.out(without_gil([&] { return avg_pool2d_backward(tdy, Shape(shape), desc); }));
          },
          py::arg("dy"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = py::none(),
          py::arg("padding") = 0, py::arg("count_include_pad") = true);

  // Dilated max pooling (gradient: max_pool2d_backward) and L2-norm pooling.
  ops.def("dilated_max_pool2d_forward",
          [](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding, py::handle dilation) {
            Call call("dilated_max_pool2d_forward");
            Tensor tx = call.in(x, "x");
            auto desc = dilated_descriptor(kernel_size, stride, padding, dilation, call.op());
            auto [y, state] = without_gil([&] { return dilated_max_pool2d_forward(tx, desc); });
            return py::make_tuple(call.out(y), py::cast(state));
          },
          py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
          py::arg("dilation") = 1);
  ops.def("l2_pool2d_forward",
          [](py::handle x, py::handle kernel_size, py::handle stride, py::handle padding, py::handle dilation) {
            Call call("l2_pool2d_forward");
            Tensor tx = call.in(x, "x");
            auto desc = dilated_descriptor(kernel_size, stride, padding, dilation, call.op());
            return call.out(without_gil([&] { return l2_pool2d_forward(tx, desc); }));
          },
          py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
          py::arg("dilation") = 1);
  ops.def("l2_pool2d_backward",
          [](py::handle dy, py::handle x, py::handle y, py::handle kernel_size, py::handle stride, py::handle padding,
             py::handle dilation) {
            Call call("l2_pool2d_backward");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x"), ty = call.in(y, "y");
            auto desc = dilated_descriptor(kernel_size, stride, padding, dilation, call.op());
            return call.out(without_gil([&] { return l2_pool2d_backward(tdy, tx, ty, desc); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("kernel_size"), py::arg("stride") = py::none(),
          py::arg("padding") = 0, py::arg("dilation") = 1);

  using graph::Program;
  using Ints = std::vector<int64_t>;
  def_program_step("add_dilated_max_pool2d_forward", [](Program& p, const std::string& label, int x, int y, int state,
                                                        Ints kernel, Ints stride, Ints padding, Ints dilation) {
    auto d = Pool2dDescriptor::make_dilated(kernel, stride, padding, dilation, "graph");
    p.add(graph::steps::dilated_max_pool2d_forward(label, x, y, state, d));
  });
  def_program_step("add_l2_pool2d_forward", [](Program& p, const std::string& label, int x, int y, Ints kernel,
                                               Ints stride, Ints padding, Ints dilation) {
    p.add(graph::steps::l2_pool2d_forward(label, x, y,
                                          Pool2dDescriptor::make_dilated(kernel, stride, padding, dilation, "graph")));
  });
  def_program_step("add_l2_pool2d_backward", [](Program& p, const std::string& label, int dy, int x, int y, int dx,
                                                Ints kernel, Ints stride, Ints padding, Ints dilation) {
    p.add(graph::steps::l2_pool2d_backward(label, dy, x, y, dx,
                                           Pool2dDescriptor::make_dilated(kernel, stride, padding, dilation, "graph")));
  });
}

}  // namespace metalnn::py_bind
