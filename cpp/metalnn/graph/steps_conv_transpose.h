// Graph steps of the transposed convolution (ConvolutionTransposeNode): forward with the
// fused bias + neuron, and the input / weight / bias gradients.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/conv_transpose.h"

namespace metalnn::graph::steps {

// Writes the pre-activation to slot `pre` when it is >= 0.
Step conv_transpose2d_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                              const ConvTranspose2dDescriptor& d, const NeuronDescriptor& neuron, int pre);
Step conv_transpose2d_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                                     const ConvTranspose2dDescriptor& d);
Step conv_transpose2d_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape,
                                      const ConvTranspose2dDescriptor& d);
Step conv_transpose2d_backward_bias(const std::string& label, int dy, int db);

}  // namespace metalnn::graph::steps
