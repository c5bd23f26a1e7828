// Convolution parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Images are NCHW, weights OIHW = (out_channels, in_channels / groups, kH, kW).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

// How a dot product is accumulated (MPSNNConvolutionAccumulatorPrecisionOption).
enum MnnAccumulation {
  MNN_ACCUMULATE_FLOAT = 0,  // float32 sums, rounded once to the storage type
  MNN_ACCUMULATE_HALF = 1    // float16 storage only: every multiply-add rounded to half
};

// H_out = (H + pad_top + pad_bottom - dilation_y * (kernel_height - 1) - 1) / stride_y + 1, likewise W_out.
struct MnnConv2dParams {
  int32_t batch;
  int32_t in_channels;
  int32_t in_height;
  int32_t in_width;
  int32_t out_channels;
  int32_t out_height;
  int32_t out_width;
  int32_t kernel_height;
  int32_t kernel_width;
  int32_t stride_y;
  int32_t stride_x;
  int32_t dilation_y;
  int32_t dilation_x;
  int32_t pad_top;
  int32_t pad_bottom;
  int32_t pad_left;
  int32_t pad_right;
  int32_t groups;        // in_channels and out_channels are multiples of it
  uint32_t accumulation;  // MnnAccumulation
  uint32_t has_bias;
};
