// 2-D convolution (MPSCNNConvolution and its gradient): images NCHW, weights OIHW.
//   y[n, o, i, j] = bias[o] + sum_{c in group(o), kh, kw}
//                   w[o, c, kh, kw] * x[n, g*Cg + c, i*sh - top + kh*dh, j*sw - left + kw*dw]
// with zero padding outside the image.
#pragma once
#include <string>
#include <vector>

#include "kernels/conv_params.h"
#include "metalnn/core/tensor.h"

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
// dx = d(sum y * dy)/dx for an input of shape input_shape.
Tensor conv2d_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                             const Conv2dDescriptor& desc);
// dw = d(sum y * dy)/dw, always accumulated in float32.
Tensor conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape,
                              const Conv2dDescriptor& desc);
// db[o] = sum_{n, i, j} dy[n, o, i, j].
Tensor conv2d_backward_bias(const Tensor& dy);

}  // namespace metalnn
