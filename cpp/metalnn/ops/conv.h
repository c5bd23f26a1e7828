// 2-D convolution (MPSCNNConvolution and its gradient): images NCHW, weights OIHW.
//   y[n, o, i, j] = bias[o] + sum_{c in group(o), kh, kw}
//                   w[o, c, kh, kw] * x[n, g*Cg + c, i*sh - top + kh*dh, j*sw - left + kw*dw]
// with zero padding outside the image. The fused forward returns f(y) for a neuron f.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "kernels/conv_params.h"
#include "metalnn/core/tensor.h"
#include "metalnn/ops/neuron.h"

namespace metalnn {

// "float" or "half"; anything else raises ValueError naming `accumulation`.
MnnAccumulation parse_accumulation(const std::string& name, const char* op);
const char* accumulation_name(MnnAccumulation a);

struct Conv2dDescriptor {
  int64_t stride_y = 1, stride_x = 1;
  int64_t dilation_y = 1, dilation_x = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t groups = 1;
  MnnAccumulation accumulation = MNN_ACCUMULATE_FLOAT;

  // stride, dilation: {s} or {sy, sx}; padding: {p}, {py, px} or {top, bottom, left, right}.
  static Conv2dDescriptor make(const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                               const std::vector<int64_t>& dilation, int64_t groups,
                               const std::string& accumulation, const char* op);

  // Checks an input shape (N, C, H, W) against a weight shape (O, C/groups, kH, kW) and
  // returns the kernel parameters (output size included); raises ValueError naming the argument.
  MnnConv2dParams params(const char* op, const Shape& x, const char* x_arg, const Shape& w,
                         const char* w_arg) const;
};

// bias may be undefined (no bias).
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dDescriptor& desc);
// Fused: y = f(z), z = conv(x) + bias, f = `neuron` applied in the kernel's epilogue (per
// image, right after its products), not as a second pass. If pre_activation is non-null it
// receives z (y's shape and dtype) for neuron_backward(dy, z). float16 storage rounds z and y
// once each; with accumulation='half', z is the half-accumulated result and y = half(f(z))
// with f computed in float32. Type none gives exactly the unfused result.
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dDescriptor& desc,
                      const NeuronDescriptor& neuron, Tensor* pre_activation);
// dx = d(sum y * dy)/dx for an input of shape input_shape.
Tensor conv2d_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                             const Conv2dDescriptor& desc);
// dw = d(sum y * dy)/dw, always accumulated in float32.
Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape,
                              const Conv2dDescriptor& desc);
// db[o] = sum_{n, i, j} dy[n, o, i, j].
Tensor conv2d_backward_bias(const Tensor& dy);

// Shared with the fully connected op (a convolution whose kernel covers the input).
namespace layer {
// The neuron of a fused forward from the Python arguments `neuron` (a type name; none: no
// neuron), `neuron_a`, `neuron_b` (unset: the MPS defaults); raises ValueError naming them.
NeuronDescriptor fused_neuron(const std::optional<std::string>& name, std::optional<float> a,
                              std::optional<float> b, const char* op);
// t is floating point with ref's dtype and device; ref is floating point.
void check_operand(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref);
// accumulation='half' needs float16 storage.
void check_accumulation(const char* op, const Tensor& t, MnnAccumulation acc);
// The rest of a forward's checks: bias undefined or (out_channels,) with x's dtype and device,
// the accumulation, a known neuron type. Returns whether there is a bias.
bool check_forward(const char* op, const Tensor& x, const Tensor& bias, int64_t out_channels,
                   MnnAccumulation acc, const NeuronDescriptor& neuron);
// A fused forward's outputs: y, and z (same shape and dtype) when pre_activation asks for it.
struct FusedOutputs {
  Tensor y, z;  // z undefined when not asked for
  FusedOutputs(const Shape& shape, const Tensor& x, Tensor* pre_activation);
  // After the kernel: hands z to pre_activation, returns y.
  Tensor finish();

 private:
  Tensor* pre_;
};
// db[o] = sum of dy over every axis but 1, for dy of rank `rank`.
Tensor bias_gradient(const char* op, const Tensor& dy, int rank, const char* layout);
}  // namespace layer

}  // namespace metalnn
