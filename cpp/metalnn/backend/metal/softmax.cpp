#include "metalnn/backend/metal/softmax.h"

#include "metalnn/backend/metal/kernel.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {
// n * s threadgroups; each strides over c with whole SIMD groups. The kernel keeps one
// partial per SIMD group in a 32-entry array, so at most 1024 threads.
void launch(KernelCall& k, const char* op, const MnnSoftmaxParams& p) {
  int64_t groups = (int64_t)p.n * p.s;
  if (groups > (int64_t)UINT32_MAX) fail(ErrorKind::Value, op, "n * s = ", groups, " exceeds 2^32");
  size_t width = threadgroup_width(k.pipeline(), (size_t)p.c, 1024);
  k.groups((size_t)groups, 1, 1, width);
}
}  // namespace

// Buffers: x 0, y 1, params 2.
void softmax_forward(const Tensor& x, const Tensor& y, const MnnSoftmaxParams& p) {
  const char* op = "softmax_forward";
  KernelCall k(op, kernel_name("softmax_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p);
  launch(k, op, p);
}

// Buffers: dy 0, y 1, dx 2, params 3.
void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx, const MnnSoftmaxParams& p) {
  const char* op = "softmax_backward";
  KernelCall k(op, kernel_name("softmax_backward", y.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, y, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  launch(k, op, p);
}

}  // namespace metalnn::metal
