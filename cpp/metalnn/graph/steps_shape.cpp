#include "metalnn/graph/steps_shape.h"

namespace metalnn::graph::steps {
namespace {

Tensor& out(Frame& f, int i) { return f.slots[(size_t)i]; }
const Tensor& in(const Frame& f, int i) { return slot(f, i, "input"); }

Step make(const std::string& label, std::function<void(Frame&)> run) {
  Step s;
  s.label = label;
  s.run = std::move(run);
  return s;
}

}  // namespace

Step upsample_forward(const std::string& label, int x, int y, bool bilinear, int64_t sh, int64_t sw, bool align) {
  return make(label, [=](Frame& f) {
    out(f, y) = bilinear ? metalnn::upsample_bilinear_forward(in(f, x), sh, sw, align)
                         : metalnn::upsample_nearest_forward(in(f, x), sh, sw);
  });
}

Step upsample_backward(const std::string& label, int dy, int dx, bool bilinear, int64_t sh, int64_t sw, bool align) {
  return make(label, [=](Frame& f) {
    out(f, dx) = bilinear ? metalnn::upsample_bilinear_backward(in(f, dy), sh, sw, align)
                          : metalnn::upsample_nearest_backward(in(f, dy), sh, sw);
  });
}

Step concat_forward(const std::string& label, std::vector<int> xs, int y) {
  return make(label, [=](Frame& f) {
    std::vector<Tensor> ts;
    for (int x : xs) ts.push_back(in(f, x));
    out(f, y) = metalnn::concat_forward(ts);
  });
}

Step reshape(const std::string& label, int x, int y, Shape shape) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::reshape_forward(in(f, x), shape); });
}

Step pad_forward(const std::string& label, int x, int y, const PadDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::pad_forward(in(f, x), d); });
}

Step pad_backward(const std::string& label, int dy, int dx, Shape input_shape, const PadDescriptor& d) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::pad_backward(in(f, dy), input_shape, d); });
}

Step crop_forward(const std::string& label, int x, int y, std::vector<int64_t> offset, std::vector<int64_t> size) {
  return make(label, [=](Frame& f) { out(f, y) = metalnn::crop_forward(in(f, x), offset, size); });
}

Step crop_backward(const std::string& label, int dy, int dx, Shape input_shape, std::vector<int64_t> offset) {
  return make(label, [=](Frame& f) { out(f, dx) = metalnn::crop_backward(in(f, dy), input_shape, offset); });
}

}  // namespace metalnn::graph::steps
