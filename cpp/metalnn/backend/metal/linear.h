// Fully connected encoders (kernels in cpp/kernels/linear.metal): tiled products in 32x32
// tiles. Same shapes as cpu::fully_connected_*; ops/linear.cpp calls these in the Metal
// branch of dispatch().
#pragma once
#include "kernels/linear_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

// y (N, O) = f(z), z = x (N, F) * w (O, F)^T + bias; pre (undefined: not kept) receives z.
// bias may be undefined when p.has_bias == 0.
void fully_connected_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                             const MnnFullyConnectedParams& p, const MnnNeuronParams& neuron, const Tensor& pre);
// dx (N, F) = dy (N, O) * w (O, F).
void fully_connected_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const MnnFullyConnectedParams& p);
// dw (O, F) = dy^T * x.
void fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw,
                                     const MnnFullyConnectedParams& p);
// db[o] = sum_n dy[n, o].
void fully_connected_backward_bias(const Tensor& dy, const Tensor& db, const MnnFullyConnectedParams& p);

}  // namespace metalnn::metal
