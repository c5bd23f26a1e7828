// Resampling / shape kernels on CUDA (current stream).
#pragma once
#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p);
void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p);
// 32 x 32 tiles through shared memory: reads and writes both coalesced.
void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p);

}  // namespace metalnn::cuda
