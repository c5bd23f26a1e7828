// Softmax / log-softmax parameters shared by host code, MSL and CUDA: fixed-width
// fields only. The input is viewed as (n, c, s): softmax runs over c for each of the
// n * s positions (s = H * W for images, 1 for (N, C) matrices).
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

struct MnnSoftmaxParams {
  int32_t n, c, s;
  uint32_t log;  // 1: log-softmax
};
