// Losses on the CPU: softmax cross-entropy, the generic loss and the YOLO loss; reductions
// return the value (accumulated in double).
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
// p.scale * sum of the p.count per-term losses, accumulated in double.
float reduce_loss_terms(const Tensor& loss, const MnnLossParams& p);

#include "metalnn/backend/kernels/loss.inc"

}  // namespace metalnn::cpu
