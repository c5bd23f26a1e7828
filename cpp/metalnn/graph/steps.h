// Step factories: one per kernel a graph node runs. Each returns a Step that reads
// its inputs from frame slots, calls the op, and writes its outputs to slots.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "metalnn/graph/program.h"
#include "metalnn/ops/conv.h"
#include "metalnn/ops/dropout.h"
#include "metalnn/ops/linear.h"
#include "metalnn/ops/loss.h"
#include "metalnn/ops/neuron.h"
#include "metalnn/ops/optimizer.h"
#include "metalnn/ops/pooling.h"

namespace metalnn::graph::steps {

// Forward. The layers run `neuron` in their epilogue (fused; type none for a plain
// layer) and write the pre-activation to slot `pre` when it is >= 0.
Step conv2d_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                    const Conv2dDescriptor& d, const NeuronDescriptor& neuron, int pre);
Step fully_connected_forward(const std::string& label, int x, int y, ParameterRef w, ParameterRef b,
                             const FullyConnectedDescriptor& d, const NeuronDescriptor& neuron, int pre);
Step neuron_forward(const std::string& label, int x, int y, const NeuronDescriptor& d);
Step max_pool2d_forward(const std::string& label, int x, int y, int state, const Pool2dDescriptor& d);
Step avg_pool2d_forward(const std::string& label, int x, int y, const Pool2dDescriptor& d);
Step copy_slot(const std::string& label, int x, int y);  // identity (dropout in inference), no copy
Step softmax_forward(const std::string& label, int x, int y, bool log);
Step softmax_cross_entropy_forward(const std::string& label, int logits, int labels, int weights, int loss,
                                   int state, const SoftmaxCrossEntropyDescriptor& d);
Step add(const std::string& label, int a, int b, int y);

// Gradients.
Step conv2d_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                           const Conv2dDescriptor& d);
Step conv2d_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape,
                            const Conv2dDescriptor& d);
Step conv2d_backward_bias(const std::string& label, int dy, int db);
Step fully_connected_backward_input(const std::string& label, int dy, int dx, ParameterRef w, Shape input_shape,
                                    const FullyConnectedDescriptor& d);
Step fully_connected_backward_weight(const std::string& label, int dy, int x, int dw, Shape weight_shape);
Step fully_connected_backward_bias(const std::string& label, int dy, int db);
Step neuron_backward(const std::string& label, int dy, int x, int dx, const NeuronDescriptor& d);
Step max_pool2d_backward(const std::string& label, int dy, int state, int dx);
Step avg_pool2d_backward(const std::string& label, int dy, int dx, Shape input_shape, const Pool2dDescriptor& d);
Step dropout_backward(const std::string& label, int dy, int state, int dx);
Step softmax_backward(const std::string& label, int dy, int y, int dx, bool log);
Step softmax_cross_entropy_backward(const std::string& label, int state, int dlogits);

// Optimizer updates of several parameters at once (one multi-tensor call).
struct UpdateTarget {
  ParameterRef value;
  int gradient_slot;
  std::vector<ParameterRef> state;  // momentum_buffer | m, v, v_max | s
};
Step sgd_update(const std::string& label, std::vector<UpdateTarget> targets, const SgdDescriptor& d);
Step rmsprop_update(const std::string& label, std::vector<UpdateTarget> targets, const RmsPropDescriptor& d);

}  // namespace metalnn::graph::steps
