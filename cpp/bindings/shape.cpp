// shape kernels (upsampling, concatenation, reshape, pad, crop, image <-> matrix, matrix
// transpose) and their
// graph steps; bind_shape also binds the arithmetic family (cpp/bindings/arithmetic.cpp).
#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_shape.h"
#include "metalnn/ops/shape.h"
#include "program_steps.h"

namespace metalnn::py_bind {

void bind_arithmetic(py::module_& ops);  // arithmetic.cpp

namespace {

// scale_factor: an int or an (sH, sW) pair.
std::pair<int64_t, int64_t> scale_pair(py::handle h, const char* op) {
  auto v = int_list(h, op, "scale_factor");
  if (v.size() != 1 && v.size() != 2)
    fail(ErrorKind::Value, op, "scale_factor must be an int or an (sH, sW) pair, got ", std::string(py::repr(h)));
  return {v[0], v.back()};
}

using Ints = std::vector<int64_t>;

}  // namespace

void bind_shape(py::module_& ops) {
  bind_arithmetic(ops);

  ops.def("upsample_nearest_forward",
          [](py::handle x, py::handle scale) {
            Call call("upsample_nearest_forward");
            Tensor tx = call.in(x, "x");
            auto [sh, sw] = scale_pair(scale, call.op());
            return call.out(without_gil([&] { return upsample_nearest_forward(tx, sh, sw); }));
          },
          py::arg("x"), py::arg("scale_factor"));
  ops.def("upsample_nearest_backward",
          [](py::handle dy, py::handle scale) {
            Call call("upsample_nearest_backward");
            Tensor t = call.in(dy, "dy");
            auto [sh, sw] = scale_pair(scale, call.op());
            return call.out(without_gil([&] { return upsample_nearest_backward(t, sh, sw); }));
          },
          py::arg("dy"), py::arg("scale_factor"));
  ops.def("upsample_bilinear_forward",
          [](py::handle x, py::handle scale, bool align) {
            Call call("upsample_bilinear_forward");
            Tensor tx = call.in(x, "x");
            auto [sh, sw] = scale_pair(scale, call.op());
            return call.out(without_gil([&] { return upsample_bilinear_forward(tx, sh, sw, align); }));
          },
          py::arg("x"), py::arg("scale_factor"), py::arg("align_corners") = false);
  ops.def("upsample_bilinear_backward",
          [](py::handle dy, py::handle scale, bool align) {
            Call call("upsample_bilinear_backward");
            Tensor t = call.in(dy, "dy");
            auto [sh, sw] = scale_pair(scale, call.op());
            return call.out(without_gil([&] { return upsample_bilinear_backward(t, sh, sw, align); }));
          },
          py::arg("dy"), py::arg("scale_factor"), py::arg("align_corners") = false);

  ops.def("concat_forward",
          [](py::handle xs) {
            Call call("concat_forward");
            if (!py::isinstance<py::sequence>(xs) || py::isinstance<py::str>(xs) || py::isinstance<py::array>(xs))
              fail(ErrorKind::Type, call.op(), "xs must be a list of images, got ",
                   std::string(py::str(py::type::of(xs).attr("__name__"))));
            std::vector<Tensor> ts;
            size_t k = 0;
            for (auto x : xs.cast<py::sequence>()) {
              std::string arg = "xs[" + std::to_string(k++) + "]";
              ts.push_back(call.in(x, arg.c_str()));
            }
            return call.out(without_gil([&] { return concat_forward(ts); }));
          },
          py::arg("xs"));
  ops.def("concat_backward",
          [](py::handle dy, py::handle channels) {
            Call call("concat_backward");
            Tensor t = call.in(dy, "dy");
            auto cs = int_list(channels, call.op(), "channels");
            auto parts = without_gil([&] { return concat_backward(t, cs); });
            py::list out;
            for (auto& p : parts) out.append(call.out(p));
            return out;
          },
          py::arg("dy"), py::arg("channels"));

  ops.def("reshape_forward",
          [](py::handle x, py::handle shape) {
            Call call("reshape_forward");
            Tensor t = call.in(x, "x");
            auto s = int_list(shape, call.op(), "shape");
            return call.out(reshape_forward(t, Shape(s.begin(), s.end())));
          },
          py::arg("x"), py::arg("shape"));
  ops.def("reshape_backward",
          [](py::handle dy, py::handle input_shape) {
            Call call("reshape_backward");
            Tensor t = call.in(dy, "dy");
            auto s = int_list(input_shape, call.op(), "input_shape");
            return call.out(reshape_backward(t, Shape(s.begin(), s.end())));
          },
          py::arg("dy"), py::arg("input_shape"));

  ops.def("pad_forward",
          [](py::handle x, py::handle padding, const std::string& mode, py::handle channels) {
            Call call("pad_forward");
            Tensor t = call.in(x, "x");
            auto d = PadDescriptor::make(int_list(padding, call.op(), "padding"), int_list(channels, call.op(), "channels"),
                                         mode, call.op());
            return call.out(without_gil([&] { return pad_forward(t, d); }));
          },
          py::arg("x"), py::arg("padding"), py::arg("mode") = "zero", py::arg("channels") = py::make_tuple(0, 0));
  ops.def("pad_backward",
          [](py::handle dy, py::handle input_shape, py::handle padding, const std::string& mode,
             py::handle channels) {
            Call call("pad_backward");
            Tensor t = call.in(dy, "dy");
            auto s = int_list(input_shape, call.op(), "input_shape");
            auto d = PadDescriptor::make(int_list(padding, call.op(), "padding"), int_list(channels, call.op(), "channels"),
                                         mode, call.op());
            return call.out(without_gil([&] { return pad_backward(t, Shape(s.begin(), s.end()), d); }));
          },
          py::arg("dy"), py::arg("input_shape"), py::arg("padding"), py::arg("mode") = "zero",
          py::arg("channels") = py::make_tuple(0, 0));

  ops.def("crop_forward",
          [](py::handle x, py::handle offset, py::handle size) {
            Call call("crop_forward");
            Tensor t = call.in(x, "x");
            auto o = int_list(offset, call.op(), "offset"), s = int_list(size, call.op(), "size");
            return call.out(without_gil([&] { return crop_forward(t, o, s); }));
          },
          py::arg("x"), py::arg("offset"), py::arg("size"));
  ops.def("crop_backward",
          [](py::handle dy, py::handle input_shape, py::handle offset) {
            Call call("crop_backward");
            Tensor t = call.in(dy, "dy");
            auto s = int_list(input_shape, call.op(), "input_shape");
            auto o = int_list(offset, call.op(), "offset");
            return call.out(without_gil([&] { return crop_backward(t, Shape(s.begin(), s.end()), o); }));
          },
          py::arg("dy"), py::arg("input_shape"), py::arg("offset"));

  ops.def("image_to_matrix",
          [](py::handle x) {
            Call call("image_to_matrix");
            return call.out(image_to_matrix(call.in(x, "x")));
          },
          py::arg("x"));
  ops.def("matrix_to_image",
          [](py::handle m, py::handle image_shape) {
            Call call("matrix_to_image");
            Tensor t = call.in(m, "m");
            auto s = int_list(image_shape, call.op(), "image_shape");
            if (s.size() != 3)
              fail(ErrorKind::Value, call.op(), "image_shape must be (channels, height, width), got ",
                   std::string(py::repr(image_shape)));
            return call.out(matrix_to_image(t, s[0], s[1], s[2]));
          },
          py::arg("m"), py::arg("image_shape"));

  ops.def("transpose_matrix_forward",
          [](py::handle x) {
            Call call("transpose_matrix_forward");
            Tensor t = call.in(x, "x");
            return call.out(without_gil([&] { return transpose_matrix_forward(t); }));
          },
          py::arg("x"));
  ops.def("transpose_matrix_backward",
          [](py::handle dy) {
            Call call("transpose_matrix_backward");
            Tensor t = call.in(dy, "dy");
            return call.out(without_gil([&] { return transpose_matrix_backward(t); }));
          },
          py::arg("dy"));

  // ---- graph steps (slots are frame indices; see cpp/metalnn/graph/steps_shape.h)
  namespace st = graph::steps;
  def_program_step("add_upsample_forward", [](graph::Program& p, const std::string& label, int x, int y,
                                              bool bilinear, int64_t sh, int64_t sw, bool align) {
    p.add(st::upsample_forward(label, x, y, bilinear, sh, sw, align));
  });
  def_program_step("add_upsample_backward", [](graph::Program& p, const std::string& label, int dy, int dx,
                                               bool bilinear, int64_t sh, int64_t sw, bool align) {
    p.add(st::upsample_backward(label, dy, dx, bilinear, sh, sw, align));
  });
  def_program_step("add_concat_forward", [](graph::Program& p, const std::string& label, std::vector<int> xs,
                                            int y) { p.add(st::concat_forward(label, std::move(xs), y)); });
  def_program_step("add_reshape", [](graph::Program& p, const std::string& label, int x, int y, Ints shape) {
    p.add(st::reshape(label, x, y, Shape(shape.begin(), shape.end())));
  });
  def_program_step("add_pad_forward", [](graph::Program& p, const std::string& label, int x, int y, Ints padding,
                                         Ints channels, const std::string& mode) {
    p.add(st::pad_forward(label, x, y, PadDescriptor::make(padding, channels, mode, "PadNode")));
  });
  def_program_step("add_pad_backward", [](graph::Program& p, const std::string& label, int dy, int dx,
                                          Ints input_shape, Ints padding, Ints channels, const std::string& mode) {
    p.add(st::pad_backward(label, dy, dx, Shape(input_shape.begin(), input_shape.end()),
                           PadDescriptor::make(padding, channels, mode, "PadNode")));
  });
  def_program_step("add_crop_forward", [](graph::Program& p, const std::string& label, int x, int y, Ints offset,
                                          Ints size) { p.add(st::crop_forward(label, x, y, offset, size)); });
  def_program_step("add_crop_backward", [](graph::Program& p, const std::string& label, int dy, int dx,
                                           Ints input_shape, Ints offset) {
    p.add(st::crop_backward(label, dy, dx, Shape(input_shape.begin(), input_shape.end()), offset));
  });
}

}  // namespace metalnn::py_bind
