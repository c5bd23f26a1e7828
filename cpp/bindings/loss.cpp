#include <pybind11/stl.h>

#include <tuple>

#include "convert.h"
#include "families.h"
#include "metalnn/graph/steps_loss.h"
#include "metalnn/ops/loss.h"
#include "program_steps.h"

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

// (type, delta, epsilon, label_smoothing) of one YOLO component.
using TermSpec = std::tuple<std::string, double, double, double>;

YoloLossDescriptor yolo_descriptor(const std::vector<std::pair<double, double>>& anchors, int64_t classes,
                                   const TermSpec& xy, const TermSpec& wh, const TermSpec& conf,
                                   const TermSpec& cls, const std::vector<double>& scales, double min_iou,
                                   double max_iou, bool rescore, const std::string& reduction, const char* op) {
  const TermSpec* specs[4] = {&xy, &wh, &conf, &cls};
  const char* names[4] = {"xy_loss", "wh_loss", "confidence_loss", "classes_loss"};
  MnnLossTerm terms[4];
  for (int i = 0; i < 4; ++i) {
    const auto& [type, delta, eps, ls] = *specs[i];
    terms[i] = make_loss_term(type, delta, eps, ls, op, names[i]);
  }
  if (scales.size() != 5) fail(ErrorKind::Value, op, "scales: expected 5 values, got ", scales.size());
  const double sc[5] = {scales[0], scales[1], scales[2], scales[3], scales[4]};
  return YoloLossDescriptor::make(anchors, classes, terms, sc, min_iou, max_iou, rescore, reduction, op);
}

std::shared_ptr<State> state_arg(Call& call, py::handle state, const char* source) {
  std::shared_ptr<State> s;
  if (!state.is_none()) {
    if (!py::isinstance<State>(state))
      fail(ErrorKind::Type, call.op(), "state must be a State from ", source, ", got ",
           std::string(py::str(py::type::of(state).attr("__name__"))));
    s = state.cast<std::shared_ptr<State>>();
  }
  return s;
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
            std::shared_ptr<State> s = state_arg(call, state, "softmax_cross_entropy_forward");
            Tensor td = scalar_or_tensor(call, dloss, "dloss");
            return call.out(without_gil([&] { return softmax_cross_entropy_backward(s, td); }));
          },
          py::arg("state"), py::arg("dloss") = 1.0);

  py::class_<LossState, State, std::shared_ptr<LossState>>(
      ops, "LossState", "The weighted loss gradient of loss_forward / yolo_loss_forward, for loss_backward.")
      .def_property_readonly("gradient", [](const LossState& s) { return to_numpy(s.grad); },
                             "float32 d(sum of the loss terms)/d(predictions), before the reduction's scale")
      .def_property_readonly("loss_type", [](const LossState& s) {
        return std::string(s.op == std::string("yolo_loss_forward") ? "yolo" : loss_type_name(s.params.type));
      })
      .def_property_readonly("reduction", [](const LossState& s) {
        const char* names[] = {"none", "sum", "mean", "sum_by_non_zero_weights"};
        return std::string(names[s.reduction]);
      })
      .def_property_readonly("divisor", [](const LossState& s) { return s.divisor; },
                             "the reduction's divisor (1 for none / sum)")
      .def_property_readonly("loss_shape", [](const LossState& s) { return py::tuple(py::cast(s.loss_shape)); });

  ops.def("loss_forward",
          [](py::handle predictions, py::handle labels, py::handle weights, const std::string& loss_type,
             const std::string& reduction, double weight, double label_smoothing, double delta, double epsilon) {
            Call call("loss_forward");
            Tensor tp = call.in(predictions, "predictions"), tl = call.in(labels, "labels");
            Tensor tw = call.in_opt(weights, "weights");
            auto desc = LossDescriptor::make(loss_type, reduction, weight, label_smoothing, delta, epsilon, call.op());
            auto [loss, state] = without_gil([&] { return loss_forward(tp, tl, tw, desc); });
            return py::make_tuple(call.out(loss), py::cast(state));
          },
          py::arg("predictions"), py::arg("labels"), py::arg("weights") = py::none(), py::kw_only(),
          py::arg("loss_type"), py::arg("reduction") = "mean", py::arg("weight") = 1.0,
          py::arg("label_smoothing") = 0.0, py::arg("delta") = 1.0, py::arg("epsilon") = 1e-7);
  ops.def("loss_backward",
          [](py::handle state, py::handle dloss) {
            Call call("loss_backward");
            std::shared_ptr<State> s = state_arg(call, state, "loss_forward or yolo_loss_forward");
            Tensor td = scalar_or_tensor(call, dloss, "dloss");
            return call.out(without_gil([&] { return loss_backward(s, td); }));
          },
          py::arg("state"), py::arg("dloss") = 1.0);
  ops.def("yolo_loss_forward",
          [](py::handle predictions, py::handle labels, const std::vector<std::pair<double, double>>& anchors,
             int64_t classes, const TermSpec& xy, const TermSpec& wh, const TermSpec& conf, const TermSpec& cls,
             const std::vector<double>& scales, double min_iou, double max_iou, bool rescore,
             const std::string& reduction) {
            Call call("yolo_loss_forward");
            Tensor tp = call.in(predictions, "predictions"), tl = call.in(labels, "labels");
            auto desc = yolo_descriptor(anchors, classes, xy, wh, conf, cls, scales, min_iou, max_iou, rescore,
                                        reduction, call.op());
            auto [loss, state] = without_gil([&] { return yolo_loss_forward(tp, tl, desc); });
            return py::make_tuple(call.out(loss), py::cast(state));
          },
          py::arg("predictions"), py::arg("labels"), py::arg("anchor_boxes"), py::arg("num_classes"),
          py::arg("xy_loss"), py::arg("wh_loss"), py::arg("confidence_loss"), py::arg("classes_loss"),
          py::arg("scales"), py::arg("min_iou_for_object_presence"), py::arg("max_iou_for_object_absence"),
          py::arg("rescore"), py::arg("reduction"));

  def_program_step("add_loss_forward", [](graph::Program& p, const std::string& label, int predictions, int labels,
                                          int weights, int loss, int state, const std::string& loss_type,
                                          const std::string& reduction, double weight, double label_smoothing,
                                          double delta, double epsilon) {
    auto d = LossDescriptor::make(loss_type, reduction, weight, label_smoothing, delta, epsilon, "graph");
    p.add(graph::steps::loss_forward(label, predictions, labels, weights, loss, state, d));
  });
  def_program_step("add_yolo_loss_forward",
                   [](graph::Program& p, const std::string& label, int predictions, int labels, int loss, int state,
                      const std::vector<std::pair<double, double>>& anchors, int64_t classes, const TermSpec& xy,
                      const TermSpec& wh, const TermSpec& conf, const TermSpec& cls,
                      const std::vector<double>& scales, double min_iou, double max_iou, bool rescore,
                      const std::string& reduction) {
                     auto d = yolo_descriptor(anchors, classes, xy, wh, conf, cls, scales, min_iou, max_iou, rescore,
                                              reduction, "graph");
                     p.add(graph::steps::yolo_loss_forward(label, predictions, labels, loss, state, d));
                   });
  def_program_step("add_loss_backward", [](graph::Program& p, const std::string& label, int state, int dpred) {
    p.add(graph::steps::loss_backward(label, state, dpred));
  });
}

}  // namespace metalnn::py_bind
