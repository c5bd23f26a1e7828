#include "metalnn/backend/metal/linear.h"

#include "metalnn/backend/metal/gemm.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers as bind_layer_forward (gemm.h). Rows N, columns O.
void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  const char* op = "fully_connected_forward";
  KernelCall k(op, kernel_name("fully_connected_forward", x.dtype()));
  bind_layer_forward(k, x, w, bias, y, p, neuron, pre);
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
