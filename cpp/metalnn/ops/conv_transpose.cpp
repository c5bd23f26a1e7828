#include "metalnn/ops/conv_transpose.h"

#include <climits>

#include "metalnn/backend/cpu/conv.h"
#include "metalnn/backend/cpu/conv_transpose.h"
#include "metalnn/backend/cuda/layer.h"
#include "metalnn/backend/metal/conv.h"
#include "metalnn/core/copy.h"
#include "metalnn/core/half.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

void image_rank(const char* op, const char* arg, const Shape& s, const char* layout) {
  if (s.size() != 4) fail(ErrorKind::Value, op, "expected 4-D ", arg, " ", layout, ", got shape ", shape_str(s));
  for (int64_t d : s)
    if (d <= 0 || d > INT32_MAX)
      fail(ErrorKind::Value, op, arg, " must have sizes in [1, 2^31), got shape ", shape_str(s));
}

// Runs the adjoint convolution's input gradient: out = conv^T(in).
void adjoint_input(const char* op, const Tensor& in, const Tensor& w, const Tensor& out, const MnnConv2dParams& p) {
  dispatch(op, in.device(), [&] { cpu::conv2d_backward_input(in, w, out, p); },
           [&] { metal::conv2d_backward_input(in, w, out, p); },
           cuda_kernel([&] { cuda::conv2d_backward_input(in, w, out, p); }));
}

// ones (C, 1, 1, 1) on `device`: the weights of a depthwise 1x1 convolution that adds the bias
// and runs the neuron with the existing fused conv kernels on devices without a CPU epilogue.
Tensor ones(int64_t c, DType dtype, Device device, const char* op) {
  Tensor t = Tensor::empty({c, 1, 1, 1}, dtype);
  for (int64_t i = 0; i < c; ++i) {
    if (dtype == DType::float16) t.data<uint16_t>()[i] = float_to_half(1.f);
    else t.data<float>()[i] = 1.f;
  }
  return device == t.device() ? t : to_device(t, device, op);
}

}  // namespace

ConvTranspose2dDescriptor ConvTranspose2dDescriptor::make(const std::vector<int64_t>& stride,
                                                          const std::vector<int64_t>& padding,
                                                          const std::vector<int64_t>& output_padding,
                                                          const std::vector<int64_t>& dilation, int64_t groups,
                                                          const std::string& accumulation, const char* op) {
  ConvTranspose2dDescriptor d;
  d.conv = Conv2dDescriptor::make(stride, padding, dilation, groups, accumulation, op);
  if (output_padding.size() != 1 && output_padding.size() != 2)
    fail(ErrorKind::Value, op, "output_padding must be an int or a pair of ints, got ", output_padding.size(),
         " values");
  d.output_pad_y = output_padding[0];
  d.output_pad_x = output_padding.back();
  // Rows past (H - 1) * s + extent are only reachable below one stride: the adjoint conv
  // maps H_out back to H exactly when output_padding < stride.
  if (d.output_pad_y < 0 || d.output_pad_x < 0 || d.output_pad_y >= d.conv.stride_y ||
      d.output_pad_x >= d.conv.stride_x)
    fail(ErrorKind::Value, op, "output_padding must be in [0, stride), got (", d.output_pad_y, ", ", d.output_pad_x,
         ") with stride (", d.conv.stride_y, ", ", d.conv.stride_x, ")");
  return d;
}

Shape ConvTranspose2dDescriptor::output_shape(const char* op, const Shape& x, const char* x_arg, const Shape& w,
                                              const char* w_arg) const {
  image_rank(op, x_arg, x, "(N, C_in, H, W)");
  image_rank(op, w_arg, w, "(C_in, C_out/groups, kH, kW)");
  if (w[0] != x[1])
    fail(ErrorKind::Value, op, x_arg, " has ", x[1], " channels but ", w_arg, " ", shape_str(w),
         " expects C_in = ", w_arg, ".shape[0] = ", w[0]);
  if (w[0] % conv.groups != 0)
    fail(ErrorKind::Value, op, w_arg, ": in_channels ", w[0], " is not divisible by groups=", conv.groups);
  const int64_t h = (x[2] - 1) * conv.stride_y - conv.pad_top - conv.pad_bottom + conv.dilation_y * (w[2] - 1) +
                    output_pad_y + 1;
  const int64_t wd = (x[3] - 1) * conv.stride_x - conv.pad_left - conv.pad_right + conv.dilation_x * (w[3] - 1) +
                     output_pad_x + 1;
  if (h < 1 || wd < 1)
    fail(ErrorKind::Value, op, x_arg, ": output size would be ", h, "x", wd, " (< 1): padding is larger than the ",
         "transposed output");
  const int64_t c = w[1] * conv.groups;
  if (c > INT32_MAX || h > INT32_MAX || wd > INT32_MAX)
    fail(ErrorKind::Value, op, "output is too large: (", x[0], ", ", c, ", ", h, ", ", wd, ")");
  return {x[0], c, h, wd};
}

MnnConv2dParams ConvTranspose2dDescriptor::params(const char* op, const Shape& x, const char* x_arg, const Shape& w,
                                                  const char* w_arg) const {
  Shape out = output_shape(op, x, x_arg, w, w_arg);
  MnnConv2dParams p = conv.params(op, out, "output", w, w_arg);
  if (p.out_height != x[2] || p.out_width != x[3])  // cannot happen with output_padding < stride
    fail(ErrorKind::Runtime, op, "internal: adjoint convolution maps ", shape_str(out), " to ", p.out_height, "x",
         p.out_width, ", not ", x[2], "x", x[3]);
  return p;
}

Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                const ConvTranspose2dDescriptor& desc, const NeuronDescriptor& neuron,
                                Tensor* pre_activation) {
  const char* op = "conv_transpose2d_forward";
  layer::check_operand(op, "weight", weight, "x", x);
  Shape out = desc.output_shape(op, x.shape(), "x", weight.shape(), "weight");
  MnnConv2dParams p = desc.params(op, x.shape(), "x", weight.shape(), "weight");
  const bool has_bias = layer::check_forward(op, x, bias, out[1], desc.conv.accumulation, neuron);
  Tensor z = Tensor::empty(out, x.dtype(), x.device());
  adjoint_input(op, x, weight, z, p);
  const bool has_neuron = neuron.type != MNN_NEURON_NONE;
  if (!has_bias && !has_neuron) {
    if (pre_activation) *pre_activation = z;
    return z;
  }
  if (x.device().type == DeviceType::cpu) {
    Tensor y = pre_activation && has_neuron ? Tensor::empty(out, x.dtype(), x.device()) : z;
    cpu::conv_transpose2d_epilogue(z, bias, neuron.params(), y);
    if (pre_activation) *pre_activation = z;
    return y;
  }
  // Other devices: a depthwise 1x1 convolution with unit weights runs bias + neuron fused.
  Conv2dDescriptor dw;
  dw.groups = out[1];
  return conv2d_forward(z, ones(out[1], x.dtype(), x.device(), op), bias, dw, neuron, pre_activation);
}

Tensor conv_transpose2d_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                                       const ConvTranspose2dDescriptor& desc) {
  const char* op = "conv_transpose2d_backward_input";
  layer::check_operand(op, "weight", weight, "dy", dy);
  Shape out = desc.output_shape(op, input_shape, "input_shape", weight.shape(), "weight");
  MnnConv2dParams p = desc.params(op, input_shape, "input_shape", weight.shape(), "weight");
  check::shape(op, "dy", dy, out);
  layer::check_accumulation(op, dy, desc.conv.accumulation);
  // The adjoint's forward: dx = conv(dy, w), no bias.
  Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
  const MnnNeuronParams none = NeuronDescriptor{}.params();
  dispatch(op, dy.device(), [&] { cpu::conv2d_forward(dy, weight, Tensor(), dx, p, none, Tensor()); },
           [&] { metal::conv2d_forward(dy, weight, Tensor(), dx, p, none, Tensor()); },
           cuda_kernel([&] { cuda::conv2d_forward(dy, weight, Tensor(), dx, p, none, Tensor()); }));
  return dx;
}

Tensor conv_transpose2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape,
                                        const ConvTranspose2dDescriptor& desc) {
  const char* op = "conv_transpose2d_backward_weight";
  layer::check_operand(op, "x", x, "dy", dy);
  Shape out = desc.output_shape(op, x.shape(), "x", weight_shape, "weight_shape");
  MnnConv2dParams p = desc.params(op, x.shape(), "x", weight_shape, "weight_shape");
  p.accumulation = MNN_ACCUMULATE_FLOAT;
  check::shape(op, "dy", dy, out);
  // Roles swapped: the adjoint conv reads dy as its input and x as its output gradient.
  Tensor dw = Tensor::empty(weight_shape, dy.dtype(), dy.device());
  dispatch(op, dy.device(), [&] { cpu::conv2d_backward_weight(x, dy, dw, p); },
           [&] { metal::conv2d_backward_weight(x, dy, dw, p); },
           cuda_kernel([&] { cuda::conv2d_backward_weight(x, dy, dw, p); }));
  return dw;
}

Tensor conv_transpose2d_backward_bias(const Tensor& dy) {
  return layer::bias_gradient("conv_transpose2d_backward_bias", dy, 4, "(N, C_out, H, W)");
}

}  // namespace metalnn
