// 2-D pooling parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Window (oh, ow) covers input rows [oh*stride_h - pad_top, +kernel_h) and columns
// [ow*stride_w - pad_left, +kernel_w); positions outside the input are padding.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

struct MnnPool2dParams {
  int32_t n, c, h, w;         // input (N, C, H, W)
  int32_t out_h, out_w;       // output (N, C, out_h, out_w)
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t pad_top, pad_bottom, pad_left, pad_right;
  uint32_t count_include_pad;  // average pooling: 1 divides by kernel_h*kernel_w, 0 by real elements
};

// Dilated max pooling and L2-norm pooling: the window of `pool` with taps dilation apart, so
// window (oh, ow) reads rows oh*stride_h - pad_top + kh*dilation_h for kh < kernel_h (likewise
// columns); taps outside the input are padding. Dilation 1 is the plain window.
struct MnnPool2dDilatedParams {
  MnnPool2dParams pool;
  int32_t dilation_h, dilation_w;
};
