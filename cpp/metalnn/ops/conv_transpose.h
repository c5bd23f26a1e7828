// 2-D transposed convolution (MPSCNNConvolutionTranspose and its gradient), composed from
// the convolution ops: it is the adjoint of conv2d with the same weights, so
//   forward(x, w)        = conv2d_backward_input(dy = x, w)        + bias, then f
//   backward_input(dy)   = conv2d_forward(dy, w)
//   backward_weight(dy)  = conv2d_backward_weight(dy = x, x = dy)   (roles swapped)
// Images NCHW; weights (C_in, C_out/groups, kH, kW), as MPS and PyTorch: weight[c] maps input
// channel c to the C_out/groups outputs of its group. With stride s, padding (top, bottom),
// dilation d and output_padding op (added at the bottom / right):
//   H_out = (H - 1) * s - top - bottom + d * (kH - 1) + op + 1,   0 <= op < s.
#pragma once
#include <vector>

#include "metalnn/ops/conv.h"

namespace metalnn {

struct ConvTranspose2dDescriptor {
  Conv2dDescriptor conv;  // stride, padding, dilation, groups, accumulation of the adjoint conv
  int64_t output_pad_y = 0, output_pad_x = 0;

  // output_padding: {p} or {py, px}; the rest as Conv2dDescriptor::make.
  static ConvTranspose2dDescriptor make(const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                                        const std::vector<int64_t>& output_padding,
                                        const std::vector<int64_t>& dilation, int64_t groups,
                                        const std::string& accumulation, const char* op);

  // (N, C_out, H_out, W_out) for an input (N, C_in, H, W) and weights (C_in, C_out/groups, kH, kW);
  // raises ValueError naming x_arg / w_arg.
  Shape output_shape(const char* op, const Shape& x, const char* x_arg, const Shape& w, const char* w_arg) const;
  // The adjoint convolution's kernel parameters: its input is this op's output.
  MnnConv2dParams params(const char* op, const Shape& x, const char* x_arg, const Shape& w, const char* w_arg) const;
};

// y = f(z), z = conv_transpose(x, w) + bias (bias (C_out,) or undefined); pre_activation, if
// non-null, receives z. float16 storage rounds the products once, then z and y once each.
Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                const ConvTranspose2dDescriptor& desc, const NeuronDescriptor& neuron = {},
                                Tensor* pre_activation = nullptr);
// dx = d(sum y * dy)/dx for the input shape input_shape (N, C_in, H, W).
Tensor conv_transpose2d_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                                       const ConvTranspose2dDescriptor& desc);
// dw = d(sum y * dy)/dw, shape weight_shape (C_in, C_out/groups, kH, kW), float32 accumulation.
Tensor conv_transpose2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape,
                                        const ConvTranspose2dDescriptor& desc);
// db[o] = sum_{n, i, j} dy[n, o, i, j].
Tensor conv_transpose2d_backward_bias(const Tensor& dy);

}  // namespace metalnn
