// Recurrent layers over whole sequences (MPSRNNMatrixTrainingLayer): single gate, LSTM,
// GRU and MGU cells (gate math in kernels/rnn_params.h), stacked, optionally bidirectional,
// with per-sequence lengths. x is (T, B, I); y is (T, B, D*H) with D = 2 when bidirectional
// (forward direction in the first H columns).
//
// Weights of each layer and direction, in this order (layer-major, then direction):
//   input_weights (G*H, I_l), recurrent_weights (G*H, H), bias (G*H), [peephole (3, H)]
// The gate pre-activation of step t is  a_t = W x_t + U h_{t-1} + b  (GRU/MGU candidate:
// W_n x_t + U_n (r_t * h_{t-1}) + b_n).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/rnn_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct RnnLayerDescriptor {
  MnnRnnCell cell = MNN_RNN_LSTM;
  MnnRnnActivation activation = MNN_RNN_TANH;  // single gate only
  int64_t input_size = 0, hidden_size = 0;
  bool peephole = false;                       // LSTM only
  bool flip_output_gates = false;              // GRU/MGU only

  int64_t gates() const { return mnn_rnn_gate_count(cell); }
  // Parses "single_gate" | "lstm" | "gru" | "mgu" and "tanh" | "relu" | "sigmoid".
  static RnnLayerDescriptor make(const std::string& cell, int64_t input_size, int64_t hidden_size,
                                 const std::string& activation, bool peephole, bool flip_output_gates,
                                 const char* op);
};

struct RnnDescriptor {
  std::vector<RnnLayerDescriptor> layers;
  bool bidirectional = false;

  int directions() const { return bidirectional ? 2 : 1; }
  int64_t output_size() const { return layers.back().hidden_size * directions(); }
  // Checks that layer l's input is the previous layer's output (D * H).
  void validate(const char* op) const;
  // The shapes of every weight, in the order above.
  std::vector<Shape> weight_shapes() const;
};

// What the forward pass keeps for the gradient, per layer and direction (float32 on the
// op's device), as MPSRNNMatrixTrainingState.
struct RnnLayerBuffers {
  Tensor gates;   // (T, B, G*H) gate activations
  Tensor hp;      // (T, B, H) hidden state before each time step
  Tensor cp;      // LSTM: (T, B, H) cell state before each time step
  Tensor rh;      // GRU/MGU: (T, B, H) gate * h_prev, the candidate's recurrent input
  Tensor h_last;  // (B, H) state after the direction's last step
  Tensor c_last;
};

class RnnState : public State {
 public:
  const char* source_op() const override { return "rnn_forward"; }
  RnnDescriptor desc;
  Shape x_shape;
  DType x_dtype = DType::float32;
  std::vector<RnnLayerBuffers> buffers;  // layer * D + direction
  std::vector<Tensor> layer_outputs;     // float32 (T, B, D*H) outputs of layers 0 .. L-2
  Tensor lengths;                        // int32 (B,), undefined when every sequence is full
};

struct RnnForwardResult {
  Tensor y;
  std::vector<Tensor> h_last, c_last;  // per layer * D + direction; c_last only for LSTM layers
  std::shared_ptr<RnnState> state;     // null unless training
};

struct RnnBackwardResult {
  Tensor dx;
  std::vector<Tensor> dweights;  // same order and dtypes as the weights
  std::vector<Tensor> dh0, dc0;  // per layer * D + direction (dc0 only for LSTM layers)
};

// h0 / c0: empty for zeros, else one (B, H_l) tensor per layer and direction (undefined
// entries are zeros; c0 entries of non-LSTM layers must be undefined). lengths: int32 or
// int64 (B,) with 0 <= lengths[b] <= T, or undefined.
RnnForwardResult rnn_forward(const RnnDescriptor& desc, const Tensor& x, const std::vector<Tensor>& weights,
                             const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, const Tensor& lengths,
                             bool training);

// Gradients of a loss L given dL/dy (dy may be undefined: zero) and dL/d(final states)
// (dh_last / dc_last: empty or one per layer and direction, undefined entries are zero).
// x is the forward input; state the one rnn_forward returned. dweights_out, when given, holds
// one tensor per weight (its shape and dtype) that receives the weight gradients (views into
// one flat gradient, say); result.dweights then refers to them. initial_state_gradients false:
// result.dh0 / dc0 entries are undefined (the CPU skips the product that makes them).
RnnBackwardResult rnn_backward(const RnnDescriptor& desc, const Tensor& x, const Tensor& dy,
                               const std::vector<Tensor>& dh_last, const std::vector<Tensor>& dc_last,
                               const std::vector<Tensor>& weights, const std::shared_ptr<State>& state,
                               const std::vector<Tensor>* dweights_out = nullptr,
                               bool initial_state_gradients = true);

}  // namespace metalnn
