// Elementwise arithmetic. The graph uses add to sum gradients where an image feeds
// several consumers; the full set (with broadcasting) comes with the layer-set issue.
#pragma once
#include "metalnn/core/tensor.h"

namespace metalnn {

// y = a + b (same shape and dtype).
Tensor add_forward(const Tensor& a, const Tensor& b);

}  // namespace metalnn
