// Loss encoders: softmax cross-entropy, the generic loss and the YOLO loss (kernels in cpp/kernels/loss.metal). Same shapes as
// cpu::softmax_cross_entropy_*, except the reductions write a float32 tensor of one element
// (the GPU result is not known while encoding). dloss arrives as float32.
#pragma once
#include "kernels/loss_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// As cpu::softmax_cross_entropy_forward: probabilities and per-position losses (float32).
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p);
// out (float32, one element) = sum (or mean, by p.reduction) of the per-position losses.
void reduce_loss(const Tensor& loss, const Tensor& out, const MnnSoftmaxCrossEntropyParams& p);
// out (float32, one element) = p.scale * sum of the p.count per-term losses.
void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p);

#include "metalnn/backend/kernels/loss.inc"

}  // namespace metalnn::metal
