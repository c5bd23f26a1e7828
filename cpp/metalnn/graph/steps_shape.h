// Graph steps of the shape family (nodes_shape.py emits them): each reads frame slots,
// calls the op and writes its result slot.
#pragma once
#include <string>
#include <vector>

#include "metalnn/graph/program.h"
#include "metalnn/ops/shape.h"

namespace metalnn::graph::steps {

Step upsample_forward(const std::string& label, int x, int y, bool bilinear, int64_t scale_h, int64_t scale_w,
                      bool align_corners);
Step upsample_backward(const std::string& label, int dy, int dx, bool bilinear, int64_t scale_h, int64_t scale_w,
                       bool align_corners);
Step concat_forward(const std::string& label, std::vector<int> xs, int y);
// A view of x with another shape (reshape, flatten, image <-> matrix): no copy.
Step reshape(const std::string& label, int x, int y, Shape shape);
Step pad_forward(const std::string& label, int x, int y, const PadDescriptor& d);
Step pad_backward(const std::string& label, int dy, int dx, Shape input_shape, const PadDescriptor& d);
// Also the per-source gradient of a concatenation (a channel window of dy).
Step crop_forward(const std::string& label, int x, int y, std::vector<int64_t> offset, std::vector<int64_t> size);
Step crop_backward(const std::string& label, int dy, int dx, Shape input_shape, std::vector<int64_t> offset);

}  // namespace metalnn::graph::steps
