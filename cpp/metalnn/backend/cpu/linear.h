// CPU fully connected kernels: one sgemm over the batch (float32, or float16 widened
// and rounded once); half accumulation runs plain loops in feature order.
#pragma once
#include "kernels/linear_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// y (N, O) = f(z), z = x (N, F) * w (O, F)^T + bias, f run per output panel right after its
// product; pre (undefined: not kept) receives z. bias may be undefined when p.has_bias == 0.
void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& pre);
// dx (N, F) = dy (N, O) * w (O, F).
void fully_connected_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const MnnFullyConnectedParams& p);
// dw (O, F) = dy^T * x.
void fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                                     const MnnFullyConnectedParams& p);

// db[o] = sum_{n, i} dy[n, o, i] for dy of shape (N, O, inner); shared with conv.
void bias_backward(const Tensor& dy, const Tensor& db, int64_t N, int64_t O, int64_t inner);

}  // namespace metalnn::cpu
