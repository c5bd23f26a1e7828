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

}  // namespace metalnn::metal
