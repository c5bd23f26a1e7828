#include "convert.h"
#include "families.h"
#include "metalnn/ops/softmax.h"

namespace metalnn::py_bind {

namespace {

template <Tensor (*Fwd)(const Tensor&)>
void def_forward(py::module_& ops, const char* name) {
  ops.def(name,
          [name](py::handle x) {
            Call call(name);
            Tensor tx = call.in(x, "x");
            return call.out(without_gil([&] { return Fwd(tx); }));
          },
          py::arg("x"));
}

template <Tensor (*Bwd)(const Tensor&, const Tensor&)>
void def_backward(py::module_& ops, const char* name) {
  ops.def(name,
          [name](py::handle dy, py::handle y) {
            Call call(name);
            Tensor tdy = call.in(dy, "dy"), ty = call.in(y, "y");
            return call.out(without_gil([&] { return Bwd(tdy, ty); }));
          },
          py::arg("dy"), py::arg("y"));
}

}  // namespace

void bind_softmax(py::module_& ops) {
  def_forward<softmax_forward>(ops, "softmax_forward");
  def_forward<log_softmax_forward>(ops, "log_softmax_forward");
  def_backward<softmax_backward>(ops, "softmax_backward");
  def_backward<log_softmax_backward>(ops, "log_softmax_backward");
}

}  // namespace metalnn::py_bind
