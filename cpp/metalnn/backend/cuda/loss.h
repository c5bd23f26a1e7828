// Softmax cross-entropy on CUDA: forward (probabilities, per-position loss, reduction)
// and gradient. Labels are int32 indices or float32 probabilities, as the state holds them.
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

}  // namespace metalnn::cuda
