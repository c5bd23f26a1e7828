// Losses on CUDA: softmax cross-entropy (probabilities, per-position loss, reduction) and
// gradient, the generic loss and the YOLO loss. Softmax cross-entropy labels are int32
// indices or float32 probabilities, as the state holds them.
#pragma once
#include "kernels/loss_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

// loss: float32 scalar for sum/mean (reduced on the device), else per_position itself.
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& per_position, const Tensor& loss,
                                   const MnnSoftmaxCrossEntropyParams& p);
// out (float32 scalar) = p.scale * sum of the per-term losses (summed in double on the device).
void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p);

#include "metalnn/backend/kernels/loss.inc"

}  // namespace metalnn::cuda
