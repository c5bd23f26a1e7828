#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// y and argmax have shape (N, C, out_h, out_w); argmax is int32 (index into the input plane).
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p);
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p);
void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p);
void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p);
// Dilated windows; the gradient is max_pool2d_backward (argmax scatter).
void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& p);
// y = sqrt(sum of x^2 over the window); dx = x * sum over windows of dy / y (0 where y == 0).
void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& p);
void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& p);

}  // namespace metalnn::cpu
