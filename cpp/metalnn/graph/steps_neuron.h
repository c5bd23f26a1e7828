// Graph steps of the neuron family beyond steps.h: PReLU (NeuronPReLUNode) with its slopes
// as a graph parameter. Slopes live in the data source as a (C, 1, 1, 1) depthwise weight;
// the steps view them as (C,) and hand the slope gradient back in the parameter's shape.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/neuron.h"

namespace metalnn::graph::steps {

Step prelu_forward(const std::string& label, int x, int y, ParameterRef slopes);
Step prelu_backward_input(const std::string& label, int dy, int x, int dx, ParameterRef slopes);
Step prelu_backward_slopes(const std::string& label, int dy, int x, int dslopes, ParameterRef slopes);

}  // namespace metalnn::graph::steps
