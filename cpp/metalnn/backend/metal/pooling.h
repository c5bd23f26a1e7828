// Max / average / dilated max / L2-norm pooling encoders (kernels in cpp/kernels/pooling.metal). Forward kernels
// run one thread per output element, backward kernels one per input element (gather).
#pragma once
#include "kernels/pooling_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// argmax: int32, shape of y, index h * w + w within the input plane.
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const MnnPool2dParams& p);
void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx, const MnnPool2dParams& p);
void avg_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dParams& p);
void avg_pool2d_backward(const Tensor& dy, const Tensor& dx, const MnnPool2dParams& p);
void dilated_max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax,
                                const MnnPool2dDilatedParams& p);
void dilated_max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx,
                                 const MnnPool2dDilatedParams& p);
void l2_pool2d_forward(const Tensor& x, const Tensor& y, const MnnPool2dDilatedParams& p);
void l2_pool2d_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& dx,
                        const MnnPool2dDilatedParams& p);

}  // namespace metalnn::metal
