// Softmax cross-entropy loss (MPSCNNLossType.softMaxCrossEntropy) with label smoothing,
// per-sample weights and none / sum / mean reduction; forward and gradient.
#pragma once
#include <memory>
#include <string>
#include <utility>

#include "kernels/loss_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct SoftmaxCrossEntropyDescriptor {
  MnnReduction reduction = MNN_REDUCTION_MEAN;
  float label_smoothing = 0.f;

  // reduction: "none", "sum" or "mean"; label_smoothing in [0, 1].
  static SoftmaxCrossEntropyDescriptor make(const std::string& reduction, double label_smoothing, const char* op);
};

const char* reduction_name(MnnReduction r);

// What the forward hands to the gradient: softmax probabilities and the targets.
class SoftmaxCrossEntropyState : public State {
 public:
  Tensor probs;    // float32, the logits' shape
  Tensor labels;   // copies: int32 class indices (N[, H, W]) or float32 probabilities (logits' shape)
  Tensor weights;  // float32 (N,), or undefined
  bool index_labels = true;
  SoftmaxCrossEntropyDescriptor desc;
  DType logits_dtype = DType::float32;
  Shape loss_shape;  // (N,) or (N, H, W)
  const char* source_op() const override { return "softmax_cross_entropy_forward"; }
};

// loss = w_n * -sum_c target_c * log_softmax(logits)_c per position, then reduced:
// "none" -> float32 loss_shape, "sum" / "mean" -> float32 scalar (shape ()).
// labels: int32/int64 class indices (loss_shape) or float probabilities (logits' shape).
// weights: float32 (N,) or undefined.
std::pair<Tensor, std::shared_ptr<SoftmaxCrossEntropyState>> softmax_cross_entropy_forward(
    const Tensor& logits, const Tensor& labels, const Tensor& weights, const SoftmaxCrossEntropyDescriptor& desc);

// dlogits = scale * w_n * (p - target), with scale = dloss (per position for "none") and
// 1 / (N * H * W) for "mean"; dloss is a float scalar (shape ()) or, for "none", of loss_shape.
Tensor softmax_cross_entropy_backward(const std::shared_ptr<State>& state, const Tensor& dloss);

}  // namespace metalnn
