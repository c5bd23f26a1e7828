// Resampling / shape kernels on the CPU (params: kernels/shape_params.h). Copies move
// storage bits (float16 stays bit-exact); sums are computed in float32 and rounded once.
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
// Window copy (pad forward, crop forward/backward): y has the output shape, x the input's.
void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
// dx (input shape) gathers dy (output shape) over every output position reading it.
void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
// x lands at channels off_c + [0, c) of y.
void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
// y (C, R) = the transpose of x (R, C), in 32 x 32 blocks ((h, w) = (R, C)).
void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p);

}  // namespace metalnn::cpu
