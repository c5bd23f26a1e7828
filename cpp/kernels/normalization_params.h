// Normalization parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Every op views its input as (n, c, s): batch, feature channels, and s = H*W (1 for (N, C)).
//   batch norm     statistics per channel over (n, s)
//   group norm     statistics per (n, group) over (c / groups, s); instance norm is groups = c,
//                  layer norm groups = 1; gamma / beta are per channel in every case
//   cross-channel  y = x / (delta + alpha / size * sum_{j in W(c)} x_j^2)^beta with
//                  W(c) = [c - size/2, c + (size-1)/2] clipped to [0, c)
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnNormFlags {
  MNN_NORM_BATCH_STATISTICS = 1,  // batch norm: statistics of this batch (training), else running ones
};

struct MnnNormParams {
  int32_t n, c, s;
  int32_t groups;    // group norm: channels per group = c / groups
  int32_t size;      // cross-channel: window of channels
  uint32_t flags;    // MnnNormFlags
  float epsilon;     // added to the variance
  float momentum;    // batch norm running update: r = (1 - momentum) r + momentum * batch
  float alpha, beta, delta;  // cross-channel
  float count;       // batch norm: n * s (elements per channel), as float
};
