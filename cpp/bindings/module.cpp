// metalnn._core: the C++ core. Kernels live in the submodule `ops`; the Python
// package wraps them with typed, documented functions.
#include "families.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "metalnn C++ core";
  metalnn::py_bind::bind_core(m);
  metalnn::py_bind::bind_dlpack(m);
  metalnn::py_bind::bind_graph(m);  // first: families add their graph steps to graph.Program
  auto ops = m.def_submodule("ops", "forward and gradient kernels");
  metalnn::py_bind::bind_neuron(ops);
  metalnn::py_bind::bind_conv(ops);
  metalnn::py_bind::bind_linear(ops);
  metalnn::py_bind::bind_pooling(ops);
  metalnn::py_bind::bind_dropout(ops);
  metalnn::py_bind::bind_softmax(ops);
  metalnn::py_bind::bind_loss(ops);
  metalnn::py_bind::bind_optimizer(ops);
  metalnn::py_bind::bind_normalization(ops);
  metalnn::py_bind::bind_rnn(ops);
  metalnn::py_bind::bind_shape(ops);
  metalnn::py_bind::bind_distributed(m);
}
