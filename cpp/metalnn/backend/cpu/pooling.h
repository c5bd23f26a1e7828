#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// y and argmax have shape (N, C, out_h, out_w); argmax is int32 (index into the input plane).
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p);
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p);
void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p);
void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p);

}  // namespace metalnn::cpu
