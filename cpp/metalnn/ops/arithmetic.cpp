#include "metalnn/ops/arithmetic.h"

#include <algorithm>
#include <climits>

#include "metalnn/backend/cpu/arithmetic.h"
#include "metalnn/backend/cuda/arithmetic.h"
#include "metalnn/backend/metal/arithmetic.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

const char* kNames[MNN_ARITH_COUNT] = {"add", "subtract", "multiply", "divide"};

// Forward op names per kind, for error messages.
const char* forward_op(MnnArithmeticOp k) {
  static const char* names[MNN_ARITH_COUNT] = {"add_forward", "subtract_forward", "multiply_forward",
                                               "divide_forward"};
  return names[k];
}
const char* backward_op(MnnArithmeticOp k) {
  static const char* names[MNN_ARITH_COUNT] = {"add_backward", "subtract_backward", "multiply_backward",
                                               "divide_backward"};
  return names[k];
}

// `s` padded to 4 dims with leading ones.
void pad4(const Shape& s, int32_t out[4]) {
  const size_t lead = 4 - s.size();
  for (size_t k = 0; k < 4; ++k) out[k] = k < lead ? 1 : (int32_t)s[k - lead];
}

// Element strides of a dense tensor of shape `s` over the 4-D output, 0 where it broadcasts.
void strides4(const Shape& s, int32_t stride[4]) {
  int32_t dims[4];
  pad4(s, dims);
  int64_t st = 1;
  for (int k = 3; k >= 0; --k) {
    stride[k] = dims[k] == 1 ? 0 : (int32_t)st;
    st *= dims[k];
  }
}

void check_shape(const char* op, const char* arg, const Shape& s) {
  if (s.empty() || s.size() > 4)
    fail(ErrorKind::Value, op, arg, " must have 1 to 4 dimensions, got shape ", shape_str(s));
  for (auto d : s)
    if (d <= 0) fail(ErrorKind::Value, op, arg, " must have positive sizes, got shape ", shape_str(s));
  if (shape_numel(s) > INT32_MAX) fail(ErrorKind::Value, op, arg, " is too large for 32-bit indices");
}

MnnArithmeticParams make_params(MnnArithmeticOp kind, const Shape& a, const Shape& b, const Shape& out) {
  MnnArithmeticParams p{};
  p.op = (uint32_t)kind;
  pad4(out, p.out);
  strides4(a, p.a_stride);
  strides4(b, p.b_stride);
  p.count = (uint32_t)shape_numel(out);
  return p;
}

}  // namespace

MnnArithmeticOp arithmetic_op(const std::string& name, const char* op) {
  for (uint32_t k = 0; k < MNN_ARITH_COUNT; ++k)
    if (name == kNames[k]) return (MnnArithmeticOp)k;
  fail(ErrorKind::Value, op, "op must be 'add', 'subtract', 'multiply' or 'divide', got '", name, "'");
}

const char* arithmetic_name(MnnArithmeticOp op) { return op < MNN_ARITH_COUNT ? kNames[op] : "?"; }

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  if (a.size() != b.size())
    fail(ErrorKind::Value, op, "b must have the rank of a (", a.size(), "), got shape ", shape_str(b), " for a of ",
         shape_str(a));
  Shape out(a.size());
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k] != b[k] && a[k] != 1 && b[k] != 1)
      fail(ErrorKind::Value, op, "b of shape ", shape_str(b), " does not broadcast with a of shape ", shape_str(a),
           " (dimension ", k, ": ", b[k], " vs ", a[k], ")");
    out[k] = std::max(a[k], b[k]);
  }
  return out;
}

Tensor arithmetic_forward(MnnArithmeticOp kind, const Tensor& a, const Tensor& b) {
  if (kind >= MNN_ARITH_COUNT) fail(ErrorKind::Value, "arithmetic_forward", "unknown op ", (int)kind);
  const char* op = forward_op(kind);
  check::floating(op, "a", a);
  check::same_dtype(op, "b", b, "a", a);
  check::same_device(op, "b", b, "a", a);
  // One shape (any rank, empty too): a flat element-wise op. Else broadcasting over <= 4 dims.
  const bool same = a.shape() == b.shape();
  Shape out = a.shape();
  if (same) {
    if (a.numel() > INT32_MAX) fail(ErrorKind::Value, op, "a is too large for 32-bit indices");
  } else {
    check_shape(op, "a", a.shape());
    check_shape(op, "b", b.shape());
    out = broadcast_shape(a.shape(), b.shape(), op);
    check_shape(op, "the result", out);
  }
  Tensor y = Tensor::empty(out, a.dtype(), a.device());
  if (y.numel() == 0) return y;
  const Shape flat{y.numel()};
  auto p = same ? make_params(kind, flat, flat, flat) : make_params(kind, a.shape(), b.shape(), out);
  dispatch(op, a.device(), [&] { cpu::arithmetic_forward(a, b, y, p); },
           [&] {
             if (same && kind == MNN_ARITH_ADD) metal::add_forward(a, b, y);
             else metal::arithmetic_forward(a, b, y, p);
           },
           cuda_kernel([&] { cuda::arithmetic_forward(a, b, y, p); }));
  return y;
}

Tensor arithmetic_backward(MnnArithmeticOp kind, int operand, const Tensor& dy, const Shape& a_shape,
                           const Shape& b_shape, const Tensor& a, const Tensor& b) {
  if (kind >= MNN_ARITH_COUNT) fail(ErrorKind::Value, "arithmetic_backward", "unknown op ", (int)kind);
  const char* op = backward_op(kind);
  if (operand != 0 && operand != 1) fail(ErrorKind::Value, op, "operand must be 0 (a) or 1 (b), got ", operand);
  check::floating(op, "dy", dy);
  const bool same = a_shape == b_shape;
  if (!same) {
    check_shape(op, "a_shape", a_shape);
    check_shape(op, "b_shape", b_shape);
  }
  Shape out = same ? a_shape : broadcast_shape(a_shape, b_shape, op);
  check::shape(op, "dy", dy, out);
  if (same && dy.numel() > INT32_MAX) fail(ErrorKind::Value, op, "dy is too large for 32-bit indices");
  const bool reads = kind == MNN_ARITH_MULTIPLY || kind == MNN_ARITH_DIVIDE;
  if (reads) {
    if (!a.defined() || !b.defined())
      fail(ErrorKind::Value, op, "a and b are required for the gradient of ", kNames[kind]);
    check::same_dtype(op, "a", a, "dy", dy);
    check::same_dtype(op, "b", b, "dy", dy);
    check::same_device(op, "a", a, "dy", dy);
    check::same_device(op, "b", b, "dy", dy);
    check::shape(op, "a", a, a_shape);
    check::shape(op, "b", b, b_shape);
  }
  const Shape& gs = operand == 0 ? a_shape : b_shape;
  Tensor g = Tensor::empty(gs, dy.dtype(), dy.device());
  if (g.numel() == 0) return g;
  const Shape flat{dy.numel()};
  auto p = same ? make_params(kind, flat, flat, flat) : make_params(kind, a_shape, b_shape, out);
  p.operand = (uint32_t)operand;
  strides4(same ? flat : gs, p.g_stride);
  p.g_count = (uint32_t)shape_numel(gs);
  p.reduce_count = p.count / p.g_count;
  // Add's and subtract's kernels never read a / b: bind dy in their place.
  const Tensor& ta = a.defined() ? a : dy;
  const Tensor& tb = b.defined() ? b : dy;
  dispatch(op, dy.device(), [&] { cpu::arithmetic_backward(dy, ta, tb, g, p); },
           [&] { metal::arithmetic_backward(dy, ta, tb, g, p); },
           cuda_kernel([&] { cuda::arithmetic_backward(dy, ta, tb, g, p); }));
  return g;
}

Tensor add_forward(const Tensor& a, const Tensor& b) { return arithmetic_forward(MNN_ARITH_ADD, a, b); }

}  // namespace metalnn
