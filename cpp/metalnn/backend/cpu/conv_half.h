// Convolution with half-precision accumulation (float16 storage only): plain loops in a
// fixed order, each multiply-add computed in float32 and rounded to half, as a half
// accumulator would. Speed is secondary here; the order is the contract.
#pragma once
#include "kernels/conv_params.h"
#include "metalnn/backend/cpu/conv_epilogue.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// z[n, o, i, j]: acc = 0; for c in group, kh, kw (taps inside the image):
// acc = half(acc + x * w); then acc = half(acc + bias[o]). y = half(f(z)): the epilogue's
// neuron runs in float32 on the half-valued z (its bias is unused here).
void conv2d_forward_half(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                         const MnnConv2dParams& p, const Epilogue& ep);
// dx[n, c, h, v]: acc = 0; for o in group, kh, kw (taps that hit an output) acc = half(acc + dy * w).
void conv2d_backward_input_half(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p);

}  // namespace metalnn::cpu
