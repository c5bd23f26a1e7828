// Normalization over NCHW images (or (N, C) / (N, C, L)), forward and gradient:
// batch normalization (MPSCNNBatchNormalization + Statistics), instance / group / layer
// normalization (MPSCNNInstanceNormalization and its grouped generalisations), and
// cross-channel local response normalization (MPSCNNCrossChannelNormalization).
// gamma / beta and the statistics are float32 (C,) whatever the image dtype.
#pragma once
#include <memory>
#include <utility>

#include "kernels/normalization_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

// What batch_norm_forward hands to batch_norm_backward: the statistics it normalised with.
class BatchNormState : public State {
 public:
  Tensor mean;      // float32 (C,): batch mean (training) or running mean
  Tensor variance;  // float32 (C,): biased batch variance (training) or running variance
  Tensor inv_std;   // float32 (C,): 1 / sqrt(variance + epsilon)
  bool batch_statistics = true;
  float epsilon = 1e-5f;
  Shape input_shape;
  DType dtype = DType::float32;
  const char* source_op() const override { return "batch_norm_forward"; }
};

// training: normalise with this batch's statistics; running_mean / running_var (optional,
// both or neither) become (1 - momentum) r + momentum * batch (unbiased variance), in place.
// Inference (training = false): normalise with running_mean / running_var (required).
std::pair<Tensor, std::shared_ptr<BatchNormState>> batch_norm_forward(const Tensor& x, const Tensor& gamma,
                                                                      const Tensor& beta, const Tensor& running_mean,
                                                                      const Tensor& running_var, bool training,
                                                                      double momentum, double epsilon);

struct NormGradients {
  Tensor dx;      // x's shape and dtype
  Tensor dgamma;  // float32 (C,)
  Tensor dbeta;   // float32 (C,)
};

// x and gamma are the forward's; the state is its result.
NormGradients batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const std::shared_ptr<State>& state);

// Per-(sample, group) statistics for group_norm_backward; instance and layer norm use it too.
class GroupNormState : public State {
 public:
  Tensor mean;     // float32 (N, groups)
  Tensor inv_std;  // float32 (N, groups)
  int64_t groups = 1;
  float epsilon = 1e-5f;
  Shape input_shape;
  DType dtype = DType::float32;
  const char* source = "group_norm_forward";
  const char* source_op() const override { return source; }
};

// `op` names the entry point in errors: group_norm_forward, instance_norm_forward (groups =
// C) or layer_norm_forward (groups = 1).
std::pair<Tensor, std::shared_ptr<GroupNormState>> group_norm_forward(const Tensor& x, const Tensor& gamma,
                                                                      const Tensor& beta, int64_t groups,
                                                                      double epsilon,
                                                                      const char* op = "group_norm_forward");
NormGradients group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const std::shared_ptr<State>& state, const char* op = "group_norm_backward");

struct CrossChannelNormDescriptor {
  int64_t size = 5;
  double alpha = 1e-4, beta = 0.75, delta = 1.0;  // MPS defaults
  static CrossChannelNormDescriptor make(int64_t size, double alpha, double beta, double delta, const char* op);
};

Tensor cross_channel_norm_forward(const Tensor& x, const CrossChannelNormDescriptor& d);
// dx from the forward input x (the window sums are recomputed).
Tensor cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const CrossChannelNormDescriptor& d);

}  // namespace metalnn
