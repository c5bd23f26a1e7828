// Loss parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Softmax cross-entropy views logits as (n, c, s): one distribution over c at each of
// the n * s positions (s = H * W for images, 1 for (N, C) matrices).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnReduction {
  MNN_REDUCTION_NONE = 0,  // one loss per position
  MNN_REDUCTION_SUM = 1,   // sum over positions
  MNN_REDUCTION_MEAN = 2,  // sum / (n * s), whatever the weights
};

struct MnnSoftmaxCrossEntropyParams {
  int32_t n, c, s;
  uint32_t index_labels;  // 1: labels are class indices (n, s); 0: probabilities (n, c, s)
  uint32_t has_weights;   // 1: per-sample weights (n)
  uint32_t reduction;     // MnnReduction
  float label_smoothing;  // target = (1 - ls) * label + ls / c
  float scale;            // gradient: scale of (p - target) (reduction and a scalar dloss)
  uint32_t dloss_per_position;  // gradient: 1 when dloss holds one value per position
};
