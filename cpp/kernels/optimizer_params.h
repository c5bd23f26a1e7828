// Optimizer parameters shared by host code, MSL and CUDA: fixed-width fields only.
// They follow MPSNNOptimizerDescriptor and its SGD / Adam / RMSProp subclasses.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

#ifndef MNN_SHARED_INLINE
#if defined(__CUDACC__)
#define MNN_SHARED_INLINE __host__ __device__ inline
#else
#define MNN_SHARED_INLINE inline
#endif
#endif

enum MnnRegularizationType {
  MNN_REGULARIZATION_NONE = 0,
  MNN_REGULARIZATION_L1 = 1,  // g += scale * sign(w)
  MNN_REGULARIZATION_L2 = 2,  // g += scale * w
};

// Gradient preprocessing common to every optimizer (MPS order: rescale, clip, regularize).
struct MnnOptimizerParams {
  float learning_rate;
  float gradient_rescale;
  uint32_t apply_gradient_clipping;
  float gradient_clip_min;
  float gradient_clip_max;
  uint32_t regularization_type;
  float regularization_scale;
  uint32_t pad0;
};

// v = momentum * v - lr * g; w += v   (nesterov: w += momentum * v_new - lr * g)
struct MnnSgdParams {
  MnnOptimizerParams common;
  float momentum;
  uint32_t nesterov;
  uint32_t has_momentum_buffer;
  uint32_t pad0;
};

// m = beta1 * m + (1 - beta1) * g; v = beta2 * v + (1 - beta2) * g^2;
// w -= lr_t * m / (sqrt(v or v_max) + epsilon). The host computes lr_t =
// lr * sqrt(1 - beta2^t) / (1 - beta1^t) and the (1 - beta) factors in double: 1 - 0.999f in
// float would be off by 1e-5.
struct MnnAdamParams {
  MnnOptimizerParams common;
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float epsilon;
  float lr_t;
  uint32_t amsgrad;
  uint32_t pad0;
};

// s = decay * s + (1 - decay) * g^2; w -= lr * g / (sqrt(s) + epsilon)
struct MnnRmsPropParams {
  MnnOptimizerParams common;
  float decay;
  float one_minus_decay;
  float epsilon;
  uint32_t pad0;
};

// The gradient an optimizer applies: rescaled, clipped, then regularized. Written with
// comparisons (not min/max) so a NaN gradient stays NaN.
MNN_SHARED_INLINE float mnn_optimizer_gradient(MnnOptimizerParams p, float g, float w) {
  g = g * p.gradient_rescale;
  if (p.apply_gradient_clipping != 0u) {
    g = g < p.gradient_clip_min ? p.gradient_clip_min : g;
    g = g > p.gradient_clip_max ? p.gradient_clip_max : g;
  }
  if (p.regularization_type == MNN_REGULARIZATION_L2) {
    g = g + p.regularization_scale * w;
  } else if (p.regularization_type == MNN_REGULARIZATION_L1) {
    float sign = w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f);
    g = g + p.regularization_scale * sign;
  }
  return g;
}
