#include "metalnn/graph/steps_arithmetic.h"

namespace metalnn::graph::steps {

Step arithmetic_forward(const std::string& label, MnnArithmeticOp op, int a, int b, int y) {
  Step s;
  s.label = label;
  s.run = [=](Frame& f) {
    f.slots[(size_t)y] = metalnn::arithmetic_forward(op, slot(f, a, "input"), slot(f, b, "input"));
  };
  return s;
}

Step arithmetic_backward(const std::string& label, MnnArithmeticOp op, int operand, int dy, int a, int b, int dg,
                         Shape a_shape, Shape b_shape) {
  Step s;
  s.label = label;
  s.run = [=](Frame& f) {
    Tensor ta = a >= 0 ? slot(f, a, "input") : Tensor(), tb = b >= 0 ? slot(f, b, "input") : Tensor();
    f.slots[(size_t)dg] = metalnn::arithmetic_backward(op, operand, slot(f, dy, "gradient"), a_shape, b_shape, ta, tb);
  };
  return s;
}

}  // namespace metalnn::graph::steps
