#include <pybind11/stl.h>

#include "convert.h"
#include "families.h"
#include "metalnn/ops/loss.h"

namespace metalnn::py_bind {

namespace {

// A Python number becomes a float32 scalar tensor; arrays and tensors go through Call.
Tensor scalar_or_tensor(Call& call, py::handle obj, const char* arg) {
  if ((py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj)) && !py::isinstance<py::bool_>(obj)) {
    Tensor t = Tensor::empty({}, DType::float32);
    *t.data<float>() = obj.cast<float>();
    return t;
  }
  return call.in(obj, arg);
}

}  // namespace

void bind_loss(py::module_& ops) {
  py::class_<SoftmaxCrossEntropyState, State, std::shared_ptr<SoftmaxCrossEntropyState>>(
      ops, "SoftmaxCrossEntropyState", "Softmax probabilities and targets, for softmax_cross_entropy_backward.")
      .def_property_readonly("probs", [](const SoftmaxCrossEntropyState& s) { return to_numpy(s.probs); },
                             "float32 softmax probabilities, the logits' shape")
      .def_property_readonly("labels", [](const SoftmaxCrossEntropyState& s) { return to_numpy(s.labels); },
                             "copy of the labels: int32 class indices or float32 probabilities")
      .def_property_readonly("weights", [](const SoftmaxCrossEntropyState& s) -> py::object {
        return s.weights.defined() ? py::object(to_numpy(s.weights)) : py::object(py::none());
      })
      .def_property_readonly("index_labels", [](const SoftmaxCrossEntropyState& s) { return s.index_labels; })
      .def_property_readonly("reduction",
                             [](const SoftmaxCrossEntropyState& s) { return std::string(reduction_name(s.desc.reduction)); })
      .def_property_readonly("label_smoothing", [](const SoftmaxCrossEntropyState& s) { return s.desc.label_smoothing; });

  ops.def("softmax_cross_entropy_forward",
          [](py::handle logits, py::handle labels, py::handle weights, const std::string& reduction,
             double label_smoothing) {
            Call call("softmax_cross_entropy_forward");
            Tensor tl = call.in(logits, "logits"), ty = call.in(labels, "labels"), tw = call.in_opt(weights, "weights");
            auto desc = SoftmaxCrossEntropyDescriptor::make(reduction, label_smoothing, call.op());
            auto [loss, state] = without_gil([&] { return softmax_cross_entropy_forward(tl, ty, tw, desc); });
            return py::make_tuple(call.out(loss), py::cast(state));
          },
          py::arg("logits"), py::arg("labels"), py::arg("weights") = py::none(), py::arg("reduction") = "mean",
          py::arg("label_smoothing") = 0.0);
  ops.def("softmax_cross_entropy_backward",
          [](py::handle state, py::handle dloss) {
            Call call("softmax_cross_entropy_backward");
            std::shared_ptr<State> s;
            if (!state.is_none()) {
              if (!py::isinstance<State>(state))
                fail(ErrorKind::Type, call.op(), "state must be a State from softmax_cross_entropy_forward, got ",
                     std::string(py::str(py::type::of(state).attr("__name__"))));
              s = state.cast<std::shared_ptr<State>>();
            }
            Tensor td = scalar_or_tensor(call, dloss, "dloss");
            return call.out(without_gil([&] { return softmax_cross_entropy_backward(s, td); }));
          },
          py::arg("state"), py::arg("dloss") = 1.0);
}

}  // namespace metalnn::py_bind
