#include "metalnn/backend/metal/conv.h"

#include "metalnn/backend/metal/gemm.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

// Buffers as bind_layer_forward (gemm.h). Rows Og, columns N*P, groups on z.
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const MnnConv2dParams& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  const char* op = "conv2d_forward";
  KernelCall k(op, kernel_name("conv2d_forward", x.dtype()));
  bind_layer_forward(k, x, w, bias, y, p, neuron, pre);
  const int64_t P = (int64_t)p.out_height * p.out_width;
  gemm_groups(k, op, p.out_channels / p.groups, (int64_t)p.batch * P, p.groups);
}

// Buffers: dy 0, w 1, dx 2, params 3. Rows Cg, columns N*H*W, groups on z.
void conv2d_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p) {
  const char* op = "conv2d_backward_input";
  KernelCall k(op, kernel_name("conv2d_backward_input", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, w, Access::read).buffer(2, dx, Access::write).bytes(3, p);
  const int64_t HW = (int64_t)p.in_height * p.in_width;
  gemm_groups(k, op, p.in_channels / p.groups, (int64_t)p.batch * HW, p.groups);
}

// Buffers: dy 0, x 1, dw 2, params 3. Rows Og, columns Cg*kH*kW, groups on z.
void conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  KernelCall k(op, kernel_name("conv2d_backward_weight", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, x, Access::read).buffer(2, dw, Access::write).bytes(3, p);
  // K = N*P is a uint loop bound in the kernel.
  checked_u32(op, "batch * out_height * out_width", (int64_t)p.batch * p.out_height * p.out_width);
  const int64_t cols = (int64_t)(p.in_channels / p.groups) * p.kernel_height * p.kernel_width;
  gemm_groups(k, op, p.out_channels / p.groups, cols, p.groups);
}

// Buffers: dy 0, db 1, params 2. One threadgroup per output channel; the kernel reduces with
// simd_sum and keeps one partial per simd-group (32 entries), so whole simd-groups, <= 1024.
void conv2d_backward_bias(const Tensor& dy, const Tensor& db, const MnnConv2dParams& p) {
  const char* op = "conv2d_backward_bias";
  const int64_t per_channel = (int64_t)p.batch * p.out_height * p.out_width;
  checked_u32(op, "batch * out_height * out_width", per_channel);
  KernelCall k(op, kernel_name("conv2d_backward_bias", dy.dtype()));
  k.buffer(0, dy, Access::read).buffer(1, db, Access::write).bytes(2, p);
  size_t width = threadgroup_width(k.pipeline(), (size_t)per_channel, 1024);
  if (width % 32 != 0)
    fail(ErrorKind::Runtime, op, "threadgroup of ", width, " threads is not whole simd-groups of 32");
  k.groups(checked_u32(op, "out_channels", p.out_channels), 1, 1, width);
}

}  // namespace metalnn::metal
