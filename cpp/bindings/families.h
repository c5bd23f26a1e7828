// One bind function per op family; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace metalnn::py_bind {
void bind_core(pybind11::module_& m);
void bind_dlpack(pybind11::module_& m);  // after bind_core: adds Tensor methods
void bind_neuron(pybind11::module_& ops);
void bind_conv(pybind11::module_& ops);
void bind_linear(pybind11::module_& ops);
void bind_pooling(pybind11::module_& ops);
void bind_dropout(pybind11::module_& ops);
void bind_softmax(pybind11::module_& ops);
void bind_loss(pybind11::module_& ops);
void bind_optimizer(pybind11::module_& ops);
void bind_graph(pybind11::module_& m);
void bind_normalization(pybind11::module_& ops);
void bind_rnn(pybind11::module_& ops);
void bind_shape(pybind11::module_& ops);
void bind_distributed(pybind11::module_& m);  // after bind_graph: adds allreduce steps
}  // namespace metalnn::py_bind
