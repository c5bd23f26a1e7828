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
// A scalar dloss (not dloss_per_position) is read on the device and multiplies p.scale.
void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits, const MnnSoftmaxCrossEntropyParams& p);

// Generic loss (as cpu::loss_forward): loss per term and weighted gradient, both float32.
void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p);
// out (float32 scalar) = p.scale * sum of the per-term losses (summed in double on the device).
void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p);
// dpred = p.scale * (dloss[term] when p.dloss_per_term, else the scalar dloss[0]) * grad.
void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p);
// YOLO loss: per-element loss and gradient (float32); labels float32.
void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p);

}  // namespace metalnn::cuda
