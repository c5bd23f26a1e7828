#include "metalnn/graph/steps_loss.h"

#include "metalnn/core/copy.h"

namespace metalnn::graph::steps {
namespace {
Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step step;  // the other fields (releases, outputs) are set by the program builder
  step.label = label;
  step.run = std::move(run);
  return step;
}
}  // namespace

Step loss_forward(const std::string& label, int predictions, int labels, int weights, int loss, int state,
                  const LossDescriptor& d) {
  return make(label, [=](Frame& f) {
    Tensor w = weights >= 0 ? f.slots[(size_t)weights] : Tensor();
    auto [l, s] = metalnn::loss_forward(slot(f, predictions, "input"), slot(f, labels, "labels"), w, d);
    f.slots[(size_t)loss] = l;
    f.states[(size_t)state] = s;
  });
}

Step yolo_loss_forward(const std::string& label, int predictions, int labels, int loss, int state,
                       const YoloLossDescriptor& d) {
  return make(label, [=](Frame& f) {
    auto [l, s] = metalnn::yolo_loss_forward(slot(f, predictions, "input"), slot(f, labels, "labels"), d);
    f.slots[(size_t)loss] = l;
    f.states[(size_t)state] = s;
  });
}

Step loss_backward(const std::string& label, int state, int dpredictions) {
  return make(label, [=](Frame& f) {
    // The loss is the graph's end: d(loss)/d(loss) = 1, on the device the loss lives on.
    const auto& st = state_as<LossState>(f.states[(size_t)state], "graph", "loss_forward");
    Tensor one = Tensor::empty({}, DType::float32);
    *one.data<float>() = 1.f;
    if (st.grad.device() != one.device()) one = to_device(one, st.grad.device(), "graph");
    f.slots[(size_t)dpredictions] = metalnn::loss_backward(f.states[(size_t)state], one);
  });
}

}  // namespace metalnn::graph::steps
