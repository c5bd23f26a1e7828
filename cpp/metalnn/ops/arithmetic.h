// Element-wise arithmetic with broadcasting, as MPSCNNAdd / Subtract / Multiply / Divide
// (primary a, secondary b) and their gradient kernels. Operands have the same rank (1 to
// 4); along each dimension their sizes are equal or one of them is 1 (broadcast), e.g. a
// (N, C, H, W) image with a (1, C, 1, 1), (N, 1, H, W) or (1, C, H, W) secondary. The graph
// also uses add_forward to sum gradients reaching one image from several consumers.
#pragma once
#include <string>

#include "kernels/arithmetic_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

MnnArithmeticOp arithmetic_op(const std::string& name, const char* op);
const char* arithmetic_name(MnnArithmeticOp op);

// y = a (op) b, y of the broadcast shape.
Tensor arithmetic_forward(MnnArithmeticOp kind, const Tensor& a, const Tensor& b);
// The gradient of sum(dy * y) with respect to a (operand 0) or b (operand 1), of that
// operand's shape (summed over the dimensions it broadcasts along). Add and subtract read
// only the shapes (a and b may be undefined); multiply and divide read a and b.
Tensor arithmetic_backward(MnnArithmeticOp kind, int operand, const Tensor& dy, const Shape& a_shape,
                           const Shape& b_shape, const Tensor& a, const Tensor& b);
// The shape of a (op) b (throws naming `op` when the shapes do not broadcast).
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);

// y = a + b (the graph's gradient sum; broadcasting allowed).
Tensor add_forward(const Tensor& a, const Tensor& b);

}  // namespace metalnn
