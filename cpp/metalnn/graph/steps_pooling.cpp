#include "metalnn/graph/steps_pooling.h"

namespace metalnn::graph::steps {
namespace {
Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;
  s.label = label;
  s.run = std::move(run);
  return s;
}
}  // namespace

Step dilated_max_pool2d_forward(const std::string& label, int x, int y, int state, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    auto [result, s] = metalnn::dilated_max_pool2d_forward(slot(f, x, "input"), d);
    f.slots[(size_t)y] = result;
    f.states[(size_t)state] = s;
  });
}

Step l2_pool2d_forward(const std::string& label, int x, int y, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) { f.slots[(size_t)y] = metalnn::l2_pool2d_forward(slot(f, x, "input"), d); });
}

Step l2_pool2d_backward(const std::string& label, int dy, int x, int y, int dx, const Pool2dDescriptor& d) {
  return make(label, [=](Frame& f) {
    f.slots[(size_t)dx] =
        metalnn::l2_pool2d_backward(slot(f, dy, "input"), slot(f, x, "input"), slot(f, y, "input"), d);
  });
}

}  // namespace metalnn::graph::steps
