#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_conv_transpose.h"
#include "metalnn/ops/conv.h"
#include "metalnn/ops/conv_transpose.h"
#include "program_steps.h"

namespace metalnn::py_bind {

using Ints = std::vector<int64_t>;

namespace {

// Transposed convolution steps and kernels share the conv keyword arguments plus output_padding.
ConvTranspose2dDescriptor transpose_desc(const Ints& stride, const Ints& padding, const Ints& output_padding,
                                         const Ints& dilation, int64_t groups, const std::string& accumulation,
                                         const char* op) {
  return ConvTranspose2dDescriptor::make(stride, padding, output_padding, dilation, groups, accumulation, op);
}

void bind_conv_transpose(py::module_& ops) {
  ops.def("conv_transpose2d_forward",
          [](py::handle x, py::handle weight, py::handle bias, const Ints& stride, const Ints& padding,
             const Ints& output_padding, const Ints& dilation, int64_t groups, const std::string& accumulation,
             const std::optional<std::string>& neuron, std::optional<float> neuron_a, std::optional<float> neuron_b,
             bool return_preactivation) -> py::object {
            Call call("conv_transpose2d_forward");
            Tensor tx = call.in(x, "x"), tw = call.in(weight, "weight"), tb = call.in_opt(bias, "bias"), z;
            auto desc = transpose_desc(stride, padding, output_padding, dilation, groups, accumulation, call.op());
            auto fn = layer::fused_neuron(neuron, neuron_a, neuron_b, call.op());
            Tensor* pre = return_preactivation ? &z : nullptr;
            Tensor y = without_gil([&] { return conv_transpose2d_forward(tx, tw, tb, desc, fn, pre); });
            if (!pre) return call.out(y);
            return py::make_tuple(call.out(y), call.out(z));
          },
          py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("output_padding") = Ints{0}, py::arg("dilation") = Ints{1},
          py::arg("groups") = 1, py::arg("accumulation") = "float", py::arg("neuron") = py::none(),
          py::arg("neuron_a") = py::none(), py::arg("neuron_b") = py::none(),
          py::arg("return_preactivation") = false);
  ops.def("conv_transpose2d_backward_input",
          [](py::handle dy, py::handle weight, const Ints& input_shape, const Ints& stride, const Ints& padding,
             const Ints& output_padding, const Ints& dilation, int64_t groups, const std::string& accumulation) {
            Call call("conv_transpose2d_backward_input");
            Tensor tdy = call.in(dy, "dy"), tw = call.in(weight, "weight");
            auto desc = transpose_desc(stride, padding, output_padding, dilation, groups, accumulation, call.op());
            return call.out(without_gil([&] { return conv_transpose2d_backward_input(tdy, tw, input_shape, desc); }));
          },
          py::arg("dy"), py::arg("weight"), py::arg("input_shape"), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("output_padding") = Ints{0}, py::arg("dilation") = Ints{1},
          py::arg("groups") = 1, py::arg("accumulation") = "float");
  ops.def("conv_transpose2d_backward_weight",
          [](py::handle dy, py::handle x, const Ints& weight_shape, const Ints& stride, const Ints& padding,
             const Ints& output_padding, const Ints& dilation, int64_t groups) {
            Call call("conv_transpose2d_backward_weight");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            auto desc = transpose_desc(stride, padding, output_padding, dilation, groups, "float", call.op());
            return call.out(without_gil([&] { return conv_transpose2d_backward_weight(tdy, tx, weight_shape, desc); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("weight_shape"), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("output_padding") = Ints{0}, py::arg("dilation") = Ints{1},
          py::arg("groups") = 1);
  ops.def("conv_transpose2d_backward_bias",
          [](py::handle dy) {
            Call call("conv_transpose2d_backward_bias");
            Tensor tdy = call.in(dy, "dy");
            return call.out(without_gil([&] { return conv_transpose2d_backward_bias(tdy); }));
          },
          py::arg("dy"));

  // Graph steps (ConvolutionTransposeNode).
  using graph::ParameterRef;
  using graph::Program;
  def_program_step("add_conv_transpose2d_forward",
                   [](Program& p, const std::string& label, int x, int y, ParameterRef w, ParameterRef b, Ints stride,
                      Ints padding, Ints output_padding, Ints dilation, int64_t groups, const std::string& acc,
                      std::optional<std::string> neuron, std::optional<float> a, std::optional<float> nb, int pre) {
                     auto d = transpose_desc(stride, padding, output_padding, dilation, groups, acc, "graph");
                     auto fn = NeuronDescriptor::make(neuron.value_or("none"), a, nb, {}, "graph");
                     p.add(graph::steps::conv_transpose2d_forward(label, x, y, w, b, d, fn, pre));
                   });
  def_program_step("add_conv_transpose2d_backward_input",
                   [](Program& p, const std::string& label, int dy, int dx, ParameterRef w, Ints input_shape,
                      Ints stride, Ints padding, Ints output_padding, Ints dilation, int64_t groups,
                      const std::string& acc) {
                     auto d = transpose_desc(stride, padding, output_padding, dilation, groups, acc, "graph");
                     p.add(graph::steps::conv_transpose2d_backward_input(label, dy, dx, w, input_shape, d));
                   });
  def_program_step("add_conv_transpose2d_backward_weight",
                   [](Program& p, const std::string& label, int dy, int x, int dw, Ints weight_shape, Ints stride,
                      Ints padding, Ints output_padding, Ints dilation, int64_t groups) {
                     auto d = transpose_desc(stride, padding, output_padding, dilation, groups, "float", "graph");
                     p.add(graph::steps::conv_transpose2d_backward_weight(label, dy, x, dw, weight_shape, d));
                   });
  def_program_step("add_conv_transpose2d_backward_bias", [](Program& p, const std::string& label, int dy, int db) {
    p.add(graph::steps::conv_transpose2d_backward_bias(label, dy, db));
  });
}

}  // namespace

void bind_conv(py::module_& ops) {
  // stride / dilation: [s] or [sy, sx]; padding: [p], [py, px] or [top, bottom, left, right].
  // neuron: fused epilogue y = f(conv + bias); return_preactivation also returns z = conv + bias.
  ops.def("conv2d_forward",
          [](py::handle x, py::handle weight, py::handle bias, const Ints& stride, const Ints& padding,
             const Ints& dilation, int64_t groups, const std::string& accumulation,
             const std::optional<std::string>& neuron, std::optional<float> neuron_a, std::optional<float> neuron_b,
             bool return_preactivation) -> py::object {
            Call call("conv2d_forward");
            Tensor tx = call.in(x, "x"), tw = call.in(weight, "weight"), tb = call.in_opt(bias, "bias"), z;
            auto desc = Conv2dDescriptor::make(stride, padding, dilation, groups, accumulation, call.op());
            auto fn = layer::fused_neuron(neuron, neuron_a, neuron_b, call.op());
            Tensor* pre = return_preactivation ? &z : nullptr;
            Tensor y = without_gil([&] { return conv2d_forward(tx, tw, tb, desc, fn, pre); });
            if (!pre) return call.out(y);
            return py::make_tuple(call.out(y), call.out(z));
          },
          py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("dilation") = Ints{1}, py::arg("groups") = 1,
          py::arg("accumulation") = "float", py::arg("neuron") = py::none(), py::arg("neuron_a") = py::none(),
          py::arg("neuron_b") = py::none(), py::arg("return_preactivation") = false);
  ops.def("conv2d_backward_input",
          [](py::handle dy, py::handle weight, const Ints& input_shape, const Ints& stride, const Ints& padding,
             const Ints& dilation, int64_t groups, const std::string& accumulation) {
            Call call("conv2d_backward_input");
            Tensor tdy = call.in(dy, "dy"), tw = call.in(weight, "weight");
            auto desc = Conv2dDescriptor::make(stride, padding, dilation, groups, accumulation, call.op());
            return call.out(without_gil([&] { return conv2d_backward_input(tdy, tw, input_shape, desc); }));
          },
          py::arg("dy"), py::arg("weight"), py::arg("input_shape"), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("dilation") = Ints{1}, py::arg("groups") = 1,
          py::arg("accumulation") = "float");
  ops.def("conv2d_backward_weight",
          [](py::handle dy, py::handle x, const Ints& weight_shape, const Ints& stride, const Ints& padding,
             const Ints& dilation, int64_t groups) {
            Call call("conv2d_backward_weight");
            Tensor tdy = call.in(dy, "dy"), tx = call.in(x, "x");
            auto desc = Conv2dDescriptor::make(stride, padding, dilation, groups, "float", call.op());
            return call.out(without_gil([&] { return conv2d_backward_weight(tdy, tx, weight_shape, desc); }));
          },
          py::arg("dy"), py::arg("x"), py::arg("weight_shape"), py::arg("stride") = Ints{1},
          py::arg("padding") = Ints{0}, py::arg("dilation") = Ints{1}, py::arg("groups") = 1);
  ops.def("conv2d_backward_bias",
          [](py::handle dy) {
            Call call("conv2d_backward_bias");
            Tensor tdy = call.in(dy, "dy");
            return call.out(without_gil([&] { return conv2d_backward_bias(tdy); }));
          },
          py::arg("dy"));
  bind_conv_transpose(ops);
}

}  // namespace metalnn::py_bind
