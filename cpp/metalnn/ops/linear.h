// Fully connected layers (MPSCNNFullyConnected): a convolution whose kernel covers the
// whole input. x is (N, F) or (N, C, H, W) with F = C*H*W, weight (O, F) or (O, C, H, W):
//   y[n, o] = bias[o] + sum_f x[n, f] * w[o, f]     (fused: f(y) for a neuron f)
#pragma once
#include <string>

#include "kernels/linear_params.h"
#include "metalnn/core/tensor.h"
#include "metalnn/ops/neuron.h"

namespace metalnn {

struct FullyConnectedDescriptor {
  MnnAccumulation accumulation = MNN_ACCUMULATE_FLOAT;
  static FullyConnectedDescriptor make(const std::string& accumulation, const char* op);
};

// bias may be undefined (no bias). y is (N, O).
Tensor fully_connected_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const FullyConnectedDescriptor& desc);
// Fused: y = f(z), z = x w^T + bias, f = `neuron` applied to each output panel right after its
// product (not a second pass); pre_activation, float16 and half accumulation as in the fused
// conv2d_forward. Type none gives exactly the unfused result.
Tensor fully_connected_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               const FullyConnectedDescriptor& desc, const NeuronDescriptor& neuron,
                               Tensor* pre_activation);
// dx[n, f] = sum_o dy[n, o] * w[o, f], returned with shape input_shape.
Tensor fully_connected_backward_input(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                                      const FullyConnectedDescriptor& desc);
// dw[o, f] = sum_n dy[n, o] * x[n, f], float32 accumulation; weight_shape empty means (O, F).
Tensor fully_connected_backward_weight(const Tensor& dy, const Tensor& x, const Shape& weight_shape);
// db[o] = sum_n dy[n, o].
Tensor fully_connected_backward_bias(const Tensor& dy);

}  // namespace metalnn
