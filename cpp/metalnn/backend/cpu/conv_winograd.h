// Winograd convolution on the CPU (stride 1, dilation 1, one group, square 3x3 or 5x5
// kernels, float32 accumulation; float16 storage is widened). Per block of tiles: input
// transform, alpha^2 products over the channels, output transform plus the fused
// epilogue. Picked where the cost model says it beats im2col; METALNN_CONV_ALGO =
// im2col | winograd | auto (default) forces a path for comparison.
#pragma once
#include "kernels/conv_params.h"
#include "metalnn/backend/cpu/conv_epilogue.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// Whether this convolution (forward, or the input gradient run as a forward with `p` the
// flipped parameters) runs as Winograd: supported, and chosen by METALNN_CONV_ALGO / cost.
bool winograd_for_forward(const MnnConv2dParams& p);
// Likewise for the weight gradient of the convolution `p`.
bool winograd_for_weight(const MnnConv2dParams& p);

// y = epilogue(conv(x, w)); w is float32 (O, C, r, r), or with `flip` the weights of the
// convolution this one is the input gradient of: (C, O, r, r), rotated by 180 degrees.
void winograd_forward(const Tensor& x, const float* w, bool flip, const Epilogue& ep, const Tensor& y,
                      const MnnConv2dParams& p);
// dw (O, C, r, r) = the weight gradient of conv(x, w) for output gradient dy.
void winograd_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p);

}  // namespace metalnn::cpu
