#include "metalnn/backend/metal/pooling.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers: x 0, y 1, argmax 2, params 3; one thread per output.
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p) {
  const char* op = "max_pool2d_forward";
  KernelCall k(op, kernel_name("max_pool2d_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).buffer(2, argmax, Access::write).bytes(3, p);
  k.threads(element_count(op, y));
}

// Buffers: dy 0, argmax 1, dx 2, params 3; one thread per input.
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p) {
  const char* op = "max_pool2d_backward";
  KernelCall k(op, kernel_name("max_pool2d_backward", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, argmax, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  k.threads(element_count(op, dx));
}

// Buffers: x 0, y 1, params 2; one thread per output.
void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p) {
  const char* op = "avg_pool2d_forward";
  KernelCall k(op, kernel_name("avg_pool2d_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p);
  k.threads(element_count(op, y));
}

// Buffers: dy 0, dx 1, params 2; one thread per input.
void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p) {
  const char* op = "avg_pool2d_backward";
  KernelCall k(op, kernel_name("avg_pool2d_backward", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, dx, Access::write).bytes(2, p);
  k.threads(element_count(op, dx));
}

// Buffers: x 0, y 1, argmax 2, params 3; one thread per output.
void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& p) {
  const char* op = "dilated_max_pool2d_forward";
  KernelCall k(op, kernel_name("dilated_max_pool2d_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).buffer(2, argmax, Access::write).bytes(3, p);
  k.threads(element_count(op, y));
}

// Buffers: dy 0, argmax 1, dx 2, params 3; one thread per input.
void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p) {
  const char* op = "max_pool2d_backward";
  KernelCall k(op, kernel_name("dilated_max_pool2d_backward", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, argmax, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  k.threads(element_count(op, dx));
}

// Buffers: x 0, y 1, params 2; one thread per output.
void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& p) {
  const char* op = "l2_pool2d_forward";
  KernelCall k(op, kernel_name("l2_pool2d_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p);
  k.threads(element_count(op, y));
}

// Buffers: dy 0, x 1, y 2, dx 3, params 4; one thread per input.
void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& p) {
  const char* op = "l2_pool2d_backward";
  KernelCall k(op, kernel_name("l2_pool2d_backward", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, y, Access::read).buffer(3, dx, Access::write);
  k.bytes(4, p).threads(element_count(op, dx));
}

}  // namespace metalnn::metal
