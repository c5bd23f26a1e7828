#include "metalnn/backend/metal/linear.h"

#include "metalnn/backend/metal/gemm.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers: x 0, w 1, bias 2, y 3, pre 4, params 5, neuron 6, store_pre 7. Rows N, columns O.
// Missing bias / pre bind x: the kernel never touches them.
void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  const char* op = "fully_connected_forward";
  const uint32_t store_pre = pre.defined() ? 1u : 0u;
  KernelCall k(op, kernel_name("fully_connected_forward", x.dtype()));
  k.buffer(0, x, Access::read).buffer(1, w, Access::read);
  k.buffer(2, p.has_bias && bias.defined() ? bias : x, Access::read);
  k.buffer(3, y, Access::write);
  if (store_pre) k.buffer(4, pre, Access::write);
  else k.buffer(4, x, Access::read);
  k.bytes(5, p).bytes(6, neuron).bytes(7, store_pre);
  checked_u32(op, "batch * out_features", (int64_t)p.batch * p.out_features);
  gemm_groups(k, op, p.batch, p.out_features, 1);
}

// Buffers: dy 0, w 1, dx 2, params 3. Rows N, columns F.
void fully_connected_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const MnnFullyConnectedParams& p) {
  const char* op = "fully_connected_backward_input";
  KernelCall k(op, kernel_name("fully_connected_backward_input", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, w, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  checked_u32(op, "batch * in_features", (int64_t)p.batch * p.in_features);
  gemm_groups(k, op, p.batch, p.in_features, 1);
}

// Buffers: dy 0, x 1, dw 2, params 3. Rows O, columns F.
void fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                                     const MnnFullyConnectedParams& p) {
  const char* op = "fully_connected_backward_weight";
  KernelCall k(op, kernel_name("fully_connected_backward_weight", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, dw, Access::write).bytes(3, p);
  checked_u32(op, "out_features * in_features", (int64_t)p.out_features * p.in_features);
  gemm_groups(k, op, p.out_features, p.in_features, 1);
}

// Buffers: dy 0, db 1, params 2; one thread per output feature.
void fully_connected_backward_bias(const Tensor& dy, const Tensor& db, const MnnFullyConnectedParams& p) {
  const char* op = "fully_connected_backward_bias";
  checked_u32(op, "batch * out_features", (int64_t)p.batch * p.out_features);
  KernelCall k(op, kernel_name("fully_connected_backward_bias", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, db, Access::write).bytes(2, p);
  k.threads((size_t)p.out_features);
}

}  // namespace metalnn::metal
