#pragma once
#include "kernels/loss_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// Writes the softmax probabilities (float32, logits' shape) and the weighted loss of each
// position (float32, n * s values). labels: int32 indices or float32 probabilities;
// weights: float32 (n) or undefined.
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p);
// Sum (or mean, by p.reduction) of the per-position losses, accumulated in double.
float reduce_loss(const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p);
// dlogits = scale * dloss[pos] * w_n * (p - target); dloss is read only when
// p.dloss_per_position.
void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits,
                                    const MnnSoftmaxCrossEntropyParams& p);

// Generic loss: loss (float32, one value per term) and grad (float32, predictions' shape) =
// weight * d term / d prediction. labels: float32 of the predictions' shape; weights float32
// per sample or per term (p.weights_mode).
void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p);
// p.scale * sum of the p.count per-term losses, accumulated in double.
float reduce_loss_terms(const Tensor& loss, const MnnLossParams& p);
// dpred = p.scale * (dloss[term] when p.dloss_per_term) * grad, in dpred's dtype.
void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p);
// YOLO loss: per-element loss and gradient (float32, predictions' shape); labels float32.
void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p);

}  // namespace metalnn::cpu
