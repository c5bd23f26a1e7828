// Softmax and log-softmax over the feature channels (axis 1) of (N, C) or (N, C, H, W)
// input, forward and gradient, as MPSCNNSoftMax / MPSCNNLogSoftMax and their gradients.
#pragma once
#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

// y = exp(x - max_c x) / sum_c exp(x - max_c x)
Tensor softmax_forward(const Tensor& x);
// y = x - max_c x - log(sum_c exp(x - max_c x))
Tensor log_softmax_forward(const Tensor& x);
// dx = y * (dy - sum_c dy * y); y is the softmax output.
Tensor softmax_backward(const Tensor& dy, const Tensor& y);
// dx = dy - exp(y) * sum_c dy; y is the log-softmax output.
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y);

// The (n, c, s) view of a 2-D or 4-D tensor; throws naming `arg` for other ranks.
MnnSoftmaxParams softmax_params(const char* op, const char* arg, const Tensor& x, bool log);

}  // namespace metalnn
