// Graph steps of the arithmetic family (AdditionNode, SubtractionNode, MultiplicationNode,
// DivisionNode and their per-source gradient nodes).
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/arithmetic.h"

namespace metalnn::graph::steps {

Step arithmetic_forward(const std::string& label, MnnArithmeticOp op, int a, int b, int y);
// Gradient for `operand` (0 = a, 1 = b); slots a / b may be -1 for add and subtract.
Step arithmetic_backward(const std::string& label, MnnArithmeticOp op, int operand, int dy, int a, int b, int dg,
                         Shape a_shape, Shape b_shape);

}  // namespace metalnn::graph::steps
