// Broadcasting arithmetic kernels and their graph steps (called from bind_shape, so no
// shared module file changes).
#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_arithmetic.h"
#include "metalnn/ops/arithmetic.h"
#include "program_steps.h"

namespace metalnn::py_bind {

void bind_arithmetic(py::module_& ops);

namespace {

Shape shape_arg(py::handle h, const char* op, const char* arg) {
  Shape s;
  if (py::isinstance<py::sequence>(h) && !py::isinstance<py::str>(h)) {
    try {
      for (auto v : h.cast<py::sequence>()) s.push_back(v.cast<int64_t>());
      return s;
    } catch (const py::cast_error&) {
    }
  }
  fail(ErrorKind::Value, op, arg, " must be a tuple of ints, got ", std::string(py::repr(h)));
}

// Both operands' gradients of one kind as a tuple (da, db).
py::tuple both(MnnArithmeticOp kind, const char* name, py::handle dy, const Shape& as, const Shape& bs,
               py::handle a, py::handle b) {
  Call call(name);
  Tensor tdy = call.in(dy, "dy");
  Tensor ta = a.is_none() ? Tensor() : call.in(a, "a"), tb = b.is_none() ? Tensor() : call.in(b, "b");
  auto [da, db] = without_gil([&] {
    return std::pair{arithmetic_backward(kind, 0, tdy, as, bs, ta, tb), arithmetic_backward(kind, 1, tdy, as, bs, ta, tb)};
  });
  return py::make_tuple(call.out(da), call.out(db));
}

}  // namespace

void bind_arithmetic(py::module_& ops) {
  ops.def("arithmetic_forward",
          [](const std::string& op, py::handle a, py::handle b) {
            Call call("arithmetic_forward");
            auto kind = arithmetic_op(op, call.op());
            Tensor ta = call.in(a, "a"), tb = call.in(b, "b");
            return call.out(without_gil([&] { return arithmetic_forward(kind, ta, tb); }));
          },
          py::arg("op"), py::arg("a"), py::arg("b"));
  ops.def("arithmetic_backward",
          [](const std::string& op, int operand, py::handle dy, py::handle a_shape, py::handle b_shape, py::handle a,
             py::handle b) {
            Call call("arithmetic_backward");
            auto kind = arithmetic_op(op, call.op());
            Tensor tdy = call.in(dy, "dy");
            Tensor ta = a.is_none() ? Tensor() : call.in(a, "a"), tb = b.is_none() ? Tensor() : call.in(b, "b");
            Shape as = shape_arg(a_shape, call.op(), "a_shape"), bs = shape_arg(b_shape, call.op(), "b_shape");
            return call.out(without_gil([&] { return arithmetic_backward(kind, operand, tdy, as, bs, ta, tb); }));
          },
          py::arg("op"), py::arg("operand"), py::arg("dy"), py::arg("a_shape"), py::arg("b_shape"),
          py::arg("a") = py::none(), py::arg("b") = py::none());

  const char* forward_names[MNN_ARITH_COUNT] = {"add_forward", "subtract_forward", "multiply_forward",
                                                "divide_forward"};
  for (uint32_t k = 0; k < MNN_ARITH_COUNT; ++k) {
    const char* name = forward_names[k];
    auto kind = (MnnArithmeticOp)k;
    ops.def(name,
            [kind, name](py::handle a, py::handle b) {
              Call call(name);
              Tensor ta = call.in(a, "a"), tb = call.in(b, "b");
              return call.out(without_gil([&] { return arithmetic_forward(kind, ta, tb); }));
            },
            py::arg("a"), py::arg("b"));
  }
  // Add and subtract read only the shapes; multiply and divide read the operands.
  ops.def("add_backward",
          [](py::handle dy, py::handle a_shape, py::handle b_shape) {
            const char* op = "add_backward";
            return both(MNN_ARITH_ADD, op, dy, shape_arg(a_shape, op, "a_shape"), shape_arg(b_shape, op, "b_shape"),
                        py::none(), py::none());
          },
          py::arg("dy"), py::arg("a_shape"), py::arg("b_shape"));
  ops.def("subtract_backward",
          [](py::handle dy, py::handle a_shape, py::handle b_shape) {
            const char* op = "subtract_backward";
            return both(MNN_ARITH_SUBTRACT, op, dy, shape_arg(a_shape, op, "a_shape"),
                        shape_arg(b_shape, op, "b_shape"), py::none(), py::none());
          },
          py::arg("dy"), py::arg("a_shape"), py::arg("b_shape"));
  for (auto [kind, op] : {std::pair{MNN_ARITH_MULTIPLY, "multiply_backward"}, std::pair{MNN_ARITH_DIVIDE, "divide_backward"}}) {
    ops.def(op,
            [kind = kind, op = op](py::handle dy, py::handle a, py::handle b) {
              Call call(op);
              Tensor ta = call.in(a, "a"), tb = call.in(b, "b");
              return both(kind, op, dy, ta.shape(), tb.shape(), a, b);
            },
            py::arg("dy"), py::arg("a"), py::arg("b"));
  }

  def_program_step("add_arithmetic_forward", [](graph::Program& p, const std::string& label, const std::string& op,
                                                int a, int b, int y) {
    p.add(graph::steps::arithmetic_forward(label, arithmetic_op(op, "graph"), a, b, y));
  });
  def_program_step("add_arithmetic_backward",
                   [](graph::Program& p, const std::string& label, const std::string& op, int operand, int dy, int a,
                      int b, int dg, std::vector<int64_t> a_shape, std::vector<int64_t> b_shape) {
                     p.add(graph::steps::arithmetic_backward(label, arithmetic_op(op, "graph"), operand, dy, a, b, dg,
                                                             Shape(a_shape.begin(), a_shape.end()),
                                                             Shape(b_shape.begin(), b_shape.end())));
                   });
}

}  // namespace metalnn::py_bind
