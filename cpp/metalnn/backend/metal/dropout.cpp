#include "metalnn/backend/metal/dropout.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers: x 0, y 1, mask 2, params 3, count 4.
void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p) {
  const char* op = "dropout_forward";
  uint32_t count = element_count(op, x);
  KernelCall k(op, kernel_name("dropout_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).buffer(2, mask, Access::write);
  k.bytes(3, p).bytes(4, count).threads(count);
}

// Buffers: dy 0, mask 1, dx 2, params 3, count 4.
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p) {
  const char* op = "dropout_backward";
  uint32_t count = element_count(op, dy);
  KernelCall k(op, kernel_name("dropout_backward", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, mask, Access::read).buffer(2, dx, Access::write);
  k.bytes(3, p).bytes(4, count).threads(count);
}

}  // namespace metalnn::metal
