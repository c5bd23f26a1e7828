// Fully connected parameters shared by host code, MSL and CUDA: fixed-width fields only.
// x is (batch, in_features) (an NCHW image flattened), weight (out_features, in_features).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif
#include "conv_params.h"  // MnnAccumulation

struct MnnFullyConnectedParams {
  int32_t batch;
  int32_t in_features;
  int32_t out_features;
  uint32_t accumulation;  // MnnAccumulation
  uint32_t has_bias;
};
