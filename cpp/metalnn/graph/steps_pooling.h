// Graph steps of L2-norm pooling and dilated max pooling (PoolingL2NormNode,
// DilatedPoolingMaxNode); the dilated max gradient is steps::max_pool2d_backward.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/pooling.h"

namespace metalnn::graph::steps {

Step dilated_max_pool2d_forward(const std::string& label, int x, int y, int state, const Pool2dDescriptor& d);
Step l2_pool2d_forward(const std::string& label, int x, int y, const Pool2dDescriptor& d);
// Reads the forward's input x and output y.
Step l2_pool2d_backward(const std::string& label, int dy, int x, int y, int dx, const Pool2dDescriptor& d);

}  // namespace metalnn::graph::steps
