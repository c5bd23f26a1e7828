// Fully connected encoders (kernels in cpp/kernels/linear.metal): tiled products in 32x32
// tiles. ops/linear.cpp calls these in the Metal branch of dispatch().
#pragma once
#include "kernels/linear_params.h"
#include "kernels/neuron_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

#include "metalnn/backend/kernels/linear.inc"

// db[o] = sum_n dy[n, o].
void fully_connected_backward_bias(const Tensor& dy, const Tensor& db, const MnnFullyConnectedParams& p);

}  // namespace metalnn::metal
