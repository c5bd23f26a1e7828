// 2-D max, average, L2-norm and dilated max pooling over NCHW images, forward and gradient,
// as MPSCNNPoolingMax / MPSCNNPoolingAverage / MPSCNNPoolingL2Norm / MPSCNNDilatedPoolingMax
// and their gradient kernels.
#pragma once
#include <memory>
#include <utility>
#include <vector>

#include "kernels/pooling_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct Pool2dDescriptor {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  bool count_include_pad = true;
  int64_t dilation_h = 1, dilation_w = 1;  // taps dilation apart (dilated max, L2-norm pooling)

  // kernel: (kH, kW); stride: (sH, sW) or empty for the kernel size; padding: (p) ,
  // (pH, pW) or (top, bottom, left, right).
  static Pool2dDescriptor make(const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                               const std::vector<int64_t>& padding, bool count_include_pad, const char* op);
  // The same with dilation: (d) or (dH, dW), positive.
  static Pool2dDescriptor make_dilated(const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                                       const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation,
                                       const char* op);
  // (N, C, H_out, W_out) for an (N, C, H, W) input; throws when the output would be
  // empty or some window would hold only padding.
  Shape output_shape(const Shape& input, const char* op) const;
  MnnPool2dParams params(const Shape& input, const Shape& output) const;
  MnnPool2dDilatedParams dilated_params(const Shape& input, const Shape& output) const;
  bool dilated() const { return dilation_h != 1 || dilation_w != 1; }
};

// What max_pool2d_forward hands to max_pool2d_backward.
class MaxPool2dState : public State {
 public:
  Tensor argmax;      // int32 (N, C, H_out, W_out): index h*W + w of the winner in its input plane
  Shape input_shape;  // (N, C, H, W)
  DType dtype = DType::float32;
  MnnPool2dParams params{};  // the forward's window: the CUDA gradient gathers with it
  int32_t dilation_h = 1, dilation_w = 1;  // dilated_max_pool2d_forward's dilation
  const char* source_op() const override { return "max_pool2d_forward"; }
};

std::pair<Tensor, std::shared_ptr<MaxPool2dState>> max_pool2d_forward(const Tensor& x,
                                                                        const Pool2dDescriptor& desc);
// dx[argmax] += dy (overlapping windows accumulate).
Tensor max_pool2d_backward(const Tensor& dy, const std::shared_ptr<State>& state);

Tensor avg_pool2d_forward(const Tensor& x, const Pool2dDescriptor& desc);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& input_shape, const Pool2dDescriptor& desc);

// Max pooling over dilated windows (MPSCNNDilatedPoolingMax); the gradient is
// max_pool2d_backward with the returned state.
std::pair<Tensor, std::shared_ptr<MaxPool2dState>> dilated_max_pool2d_forward(const Tensor& x,
                                                                                const Pool2dDescriptor& desc);

// L2-norm pooling (MPSCNNPoolingL2Norm): y = sqrt(sum of x^2 over the window's real taps).
Tensor l2_pool2d_forward(const Tensor& x, const Pool2dDescriptor& desc);
// dx[i] = x[i] * sum over the windows o holding i of dy[o] / y[o] (0 where y[o] == 0); x and y
// are the forward's input and output.
Tensor l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Pool2dDescriptor& desc);

}  // namespace metalnn
