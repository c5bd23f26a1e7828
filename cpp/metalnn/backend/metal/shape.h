// Resampling / shape encoders (kernels in cpp/kernels/shape.metal).
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p);

}  // namespace metalnn::metal
