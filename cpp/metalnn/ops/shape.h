// Resampling and shape ops over NCHW images, as MPSCNNUpsamplingNearest / Bilinear,
// MPSNNConcatenationNode, MPSNNReshapeNode, MPSNNPadNode, crop/slice and the data
// converters MPSImageCopyToMatrix / MPSMatrixCopyToImage, and the matrix transpose; each with
// its gradient.
#pragma once
#include <string>
#include <vector>

#include "kernels/shape_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

// y[n, c, i, j] = x[n, c, i / sh, j / sw]; y is (N, C, H*sh, W*sw).
Tensor upsample_nearest_forward(const Tensor& x, int64_t scale_h, int64_t scale_w);
// dx[n, c, h, w] = sum of dy over the (sh, sw) block the input pixel was copied to.
Tensor upsample_nearest_backward(const Tensor& dy, int64_t scale_h, int64_t scale_w);

// Bilinear interpolation to (H*sh, W*sw). Source row of output row i: align_corners:
// i*(H-1)/(OH-1); else max((i+0.5)/sh - 0.5, 0). Rows h0 = floor(src), h1 = min(h0+1, H-1).
Tensor upsample_bilinear_forward(const Tensor& x, int64_t scale_h, int64_t scale_w, bool align_corners);
Tensor upsample_bilinear_backward(const Tensor& dy, int64_t scale_h, int64_t scale_w, bool align_corners);

// Concatenation along feature channels of any number of (N, C_k, H, W) inputs.
Tensor concat_forward(const std::vector<Tensor>& xs);
// The per-source gradients: channel slices of dy of sizes `channels`.
std::vector<Tensor> concat_backward(const Tensor& dy, const std::vector<int64_t>& channels);

// Reshape without copying (tensors are dense); one -1 entry is inferred.
Tensor reshape_forward(const Tensor& x, const Shape& shape);
Tensor reshape_backward(const Tensor& dy, const Shape& input_shape);

struct PadDescriptor {
  int64_t front = 0, back = 0;          // feature channels
  int64_t top = 0, bottom = 0, left = 0, right = 0;
  MnnPadMode mode = MNN_PAD_ZERO;

  // padding: (p), (pH, pW), (top, bottom, left, right); channels: () or (front, back);
  // mode: "zero", "edge" (clamp) or "reflect".
  static PadDescriptor make(const std::vector<int64_t>& padding, const std::vector<int64_t>& channels,
                            const std::string& mode, const char* op);
  Shape output_shape(const Shape& input, const char* op) const;
};

const char* pad_mode_name(MnnPadMode mode);

Tensor pad_forward(const Tensor& x, const PadDescriptor& d);
// dx[p] = sum of dy over the output positions that read input position p.
Tensor pad_backward(const Tensor& dy, const Shape& input_shape, const PadDescriptor& d);

// y = x[:, c0:c0+C', h0:h0+H', w0:w0+W'] (the window must lie inside x).
Tensor crop_forward(const Tensor& x, const std::vector<int64_t>& offset, const std::vector<int64_t>& size);
// dx = zeros(input_shape) with dy written into the window.
Tensor crop_backward(const Tensor& dy, const Shape& input_shape, const std::vector<int64_t>& offset);

// (N, C, H, W) images -> (N, C*H*W) matrix (rows = images, columns in C, H, W order) and back.
// Both are views of the same memory (NCHW is already that layout).
Tensor image_to_matrix(const Tensor& x);
Tensor matrix_to_image(const Tensor& m, int64_t channels, int64_t height, int64_t width);

// y[j, i] = x[i, j]: an (R, C) matrix -> its (C, R) transpose (a copy; float16 bits kept).
// The gradient of a transpose is the transpose of the gradient: dx[i, j] = dy[j, i].
Tensor transpose_matrix_forward(const Tensor& x);
Tensor transpose_matrix_backward(const Tensor& dy);

}  // namespace metalnn
