// Loss encoders: softmax cross-entropy, the generic loss and the YOLO loss (kernels in cpp/kernels/loss.metal). Same shapes as
// cpu::softmax_cross_entropy_*, except the reduction writes a float32 tensor of one element
// (the GPU result is not known while encoding).
#pragma once
#include "kernels/loss_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// Writes the softmax probabilities (float32, logits' shape) and the weighted loss of each
// position (float32, n * s values). labels: int32 indices or float32 probabilities;
// weights: float32 (n) or undefined.
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p);
// out (float32, one element) = sum (or mean, by p.reduction) of the per-position losses.
void reduce_loss(const Tensor& loss, const Tensor& out, const MnnSoftmaxCrossEntropyParams& p);
// dlogits = scale * dloss[pos] * w_n * (p - target); dloss (float32) is read only when
// p.dloss_per_position and may be undefined otherwise.
void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits,
                                    const MnnSoftmaxCrossEntropyParams& p);

// Generic loss (as cpu::loss_forward): loss per term and weighted gradient, both float32.
void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p);
// out (float32, one element) = p.scale * sum of the p.count per-term losses.
void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p);
// dpred = p.scale * (dloss[term] when p.dloss_per_term; float32) * grad.
void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p);
// YOLO loss: per-element loss and gradient (float32); labels float32.
void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p);

}  // namespace metalnn::metal
