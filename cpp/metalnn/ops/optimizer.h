// Optimizer steps, as MPSNNOptimizerStochasticGradientDescent / Adam / RMSProp: in-place
// updates of weights and optimizer state. Every argument is checked before anything is
// written, so bad input leaves weights and state untouched.
//
// Gradient preprocessing (MPS order): g = gradient_rescale * grad; clipped to
// [clip_min, clip_max] when clipping is on; then regularization (L2: g += scale * w,
// L1: g += scale * sign(w); none: no term). Weights and gradients are float32 or float16 (float16 is
// updated in float32 and rounded once); state is always float32.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/optimizer_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

// Hyper-parameters are held in double so derived factors (1 - beta, lr_t) are exact
// before the kernels get them as float.
struct OptimizerDescriptor {
  double learning_rate = 0.01;
  double gradient_rescale = 1.0;
  bool apply_gradient_clipping = false;
  double gradient_clip_min = 0.0, gradient_clip_max = 0.0;
  MnnRegularizationType regularization = MNN_REGULARIZATION_NONE;
  double regularization_scale = 0.0;  // "weight_decay" in the Python API
  // Per-tensor factors on learning_rate for the *_step_many forms (a data source's learning-rate
  // scale in the graph): tensor i is updated with learning_rate * learning_rate_scales[i]. Empty:
  // 1 for every tensor; otherwise one finite value >= 0 per weight tensor.
  std::vector<double> learning_rate_scales;

  // Throws ValueError naming the bad hyper-parameter.
  void validate(const char* op) const;
  MnnOptimizerParams params() const;
};

struct SgdDescriptor {
  OptimizerDescriptor base;
  double momentum = 0.0;  // 0 <= momentum < 1
  bool nesterov = false;

  void validate(const char* op) const;
  MnnSgdParams params(bool has_momentum_buffer) const;
};

struct AdamDescriptor {
  OptimizerDescriptor base;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  bool amsgrad = false;
  // CUDA graph replay: when set, the step t = *device_step + device_step_offset is read on
  // the device and the bias correction computed there (the `step` argument is then the
  // recording batch's value, checked as usual).
  const int64_t* device_step = nullptr;
  int64_t device_step_offset = 0;

  void validate(const char* op) const;
  MnnAdamParams params(int64_t step) const;
};

struct RmsPropDescriptor {
  OptimizerDescriptor base;
  double decay = 0.9, epsilon = 1e-8;

  void validate(const char* op) const;
  MnnRmsPropParams params() const;
};

// v = momentum * v - lr * g; w += v. Nesterov: w += momentum * v_new - lr * g.
// `momentum_buffer` (float32) may be undefined only when momentum == 0.
void sgd_step(const Tensor& weights, const Tensor& gradients, const Tensor& momentum_buffer,
              const SgdDescriptor& desc);
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr_t m / (sqrt(v_hat) + eps), with
// lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), v_hat = v, or v_max = max(v_max, v) with amsgrad.
// `step` is 1-based. `v_max` is required with amsgrad and ignored without.
void adam_step(const Tensor& weights, const Tensor& gradients, const Tensor& m, const Tensor& v,
               const Tensor& v_max, int64_t step, const AdamDescriptor& desc);
// s = decay s + (1 - decay) g^2; w -= lr g / (sqrt(s) + eps).
void rmsprop_step(const Tensor& weights, const Tensor& gradients, const Tensor& s, const RmsPropDescriptor& desc);

// Multi-tensor forms: one call updates a whole network's parameters (one parallel region).
// State lists have the length of `weights`; an optional state list may be empty.
void sgd_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                   const std::vector<Tensor>& momentum_buffers, const SgdDescriptor& desc);
void adam_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                    const std::vector<Tensor>& m, const std::vector<Tensor>& v, const std::vector<Tensor>& v_max,
                    int64_t step, const AdamDescriptor& desc);
void rmsprop_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                       const std::vector<Tensor>& s, const RmsPropDescriptor& desc);

}  // namespace metalnn
