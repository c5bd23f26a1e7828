#include "metalnn/backend/metal/neuron.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/extents.h"
#include "metalnn/backend/metal/kernel.h"
#include "metalnn/backend/metal/pipelines.h"

namespace metalnn::metal {

// Buffers: x 0, y 1, params 2, count 3.
void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p) {
  const char* op = "neuron_forward";
  uint32_t count = element_count(op, x);
  KernelCall k(op, kernel_name("neuron_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, p).bytes(3, count).threads(count);
}

// Buffers: dy 0, x 1, dx 2, params 3, count 4.
void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p) {
  const char* op = "neuron_backward";
  uint32_t count = element_count(op, x);
  KernelCall k(op, kernel_name("neuron_backward", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, dx, Access::write);
  k.bytes(3, p).bytes(4, count).threads(count);
}

// Buffers: x 0, slopes 1, y 2, params 3, count 4.
void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p) {
  const char* op = "prelu_forward";
  uint32_t count = element_count(op, x);
  KernelCall k(op, kernel_name("prelu_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, slopes, Access::read).buffer(2, y, Access::write);
  k.bytes(3, p).bytes(4, count).threads(count);
}

// Buffers: dy 0, x 1, slopes 2, dx 3, params 4, count 5.
void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p) {
  const char* op = "prelu_backward_input";
  uint32_t count = element_count(op, x);
  KernelCall k(op, kernel_name("prelu_backward_input", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, slopes, Access::read);
  k.buffer(3, dx, Access::write).bytes(4, p).bytes(5, count).threads(count);
}

// Buffers: dy 0, x 1, dslopes 2, params 3. One threadgroup per channel; the kernel keeps one
// simd_sum partial per simd-group (32 entries), so whole simd-groups, <= 1024 threads.
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p) {
  const char* op = "prelu_backward_slopes";
  element_count(op, x);  // the kernel's element indices are uint
  if (p.channels == 0) return;
  const size_t per_channel = (size_t)p.outer * p.inner;
  KernelCall k(op, kernel_name("prelu_backward_slopes", x.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, ds, Access::write).bytes(3, p);
  size_t width = threadgroup_width(k.pipeline(), per_channel, 1024);
  if (width % 32 != 0)
    fail(ErrorKind::Runtime, op, "threadgroup of ", width, " threads is not whole simd-groups of 32");
  k.groups(checked_u32(op, "channels", p.channels), 1, 1, width);
}

}  // namespace metalnn::metal
