// 2-D max / average / dilated max / L2-norm pooling on CUDA, forward and gradient (float32 and float16 storage).
#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p);
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p);
void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p);
void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p);
// Dilated max pooling (gradient: gather over the forward's dilated windows) and L2-norm pooling.
void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& p);
void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p);
void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& p);
void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& p);

}  // namespace metalnn::cuda
