#include "metalnn/backend/metal/neuron.h"

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

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

}  // namespace metalnn::metal
