#include "metalnn/backend/metal/arithmetic.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers: a 0, b 1, y 2, count 3.
void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  const char* op = "add_forward";
  uint32_t count = element_count(op, y);
  KernelCall k(op, kernel_name("add_forward", y.dtype()));
  k.buffer(0, a, Access::read).buffer(1, b, Access::read).buffer(2, y, Access::write);
  k.bytes(3, count).threads(count);
}

// Buffers: a 0, b 1, y 2, params 3; one thread per output element.
void arithmetic_forward(const Tensor& a, const Tensor& b, const Tensor& y, const MnnArithmeticParams& p) {
  const char* op = "arithmetic_forward";
  KernelCall k(op, kernel_name("arithmetic_forward", y.dtype()));
  k.buffer(0, a, Access::read).buffer(1, b, Access::read).buffer(2, y, Access::write).bytes(3, p);
  k.threads(element_count(op, y));
}

// Buffers: dy 0, a 1, b 2, g 3, params 4. Few terms per gradient element: a thread each;
// many (a per-channel gradient over the batch and the image): a threadgroup each.
void arithmetic_backward(const Tensor& dy, const Tensor& a, const Tensor& b, const Tensor& g,
                         const MnnArithmeticParams& p) {
  const char* op = "arithmetic_backward";
  const bool wide = p.reduce_count >= 64;
  KernelCall k(op, kernel_name(wide ? "arithmetic_backward_reduce" : "arithmetic_backward", g.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, a, Access::read).buffer(2, b, Access::read);
  k.buffer(3, g, Access::write).bytes(4, p);
  if (wide) k.groups(element_count(op, g), 1, 1, threadgroup_width(k.pipeline(), p.reduce_count, 256));
  else k.threads(element_count(op, g));
}

}  // namespace metalnn::metal
