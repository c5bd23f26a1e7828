// The LSTM's per-step work on the CPU (no peephole, no sequence lengths): the recurrent
// products of a step are small (B x H by H x 4H), where a BLAS call's packing and dispatch
// cost as much as the arithmetic. Here the weights are packed once per sequence, each step
// runs a register-blocked product with the cell's nonlinearity as its epilogue. A team of
// threads splits the batch rows (no barrier per step) or, for small batches, the hidden units
// (one barrier per step).
#pragma once
#include <cstdint>

namespace metalnn::cpu {

// One layer and direction; layouts as in ops/rnn.h: gates (T, B, 4H) in order i, f, g, o;
// hp / cp (T, B, H) hold the state before each time step; the state after the last step
// goes to h_last / c_last.
struct LstmSequence {
  int64_t T = 0, B = 0, I = 0, H = 0;
  bool reverse = false;
  const float *W = nullptr, *U = nullptr, *bias = nullptr;  // (4H, I), (4H, H), (4H)
  float *gates = nullptr, *hp = nullptr, *cp = nullptr, *h_last = nullptr, *c_last = nullptr;
};

// x (T*B, I); y rows of ldy (the layer's output, h per step). The initial state is in
// hp / cp at the first step's time; h0_zero says h there is all zeros (its product is skipped).
void lstm_forward_fused(const LstmSequence& L, const float* x, float* y, int64_t ldy, bool h0_zero);

// dy rows of ldy or null; dh / dc (B, H): in dL/d(final state), out dL/d(initial state).
// Writes dgates (T, B, 4H), the gradients of the gate pre-activations (for the weight products).
// need_dh0 false: the caller discards dL/dh_initial, so the first step's product (and its
// barrier) is skipped and dh is left unspecified.
void lstm_backward_fused(const LstmSequence& L, const float* dy, int64_t ldy, float* dh, float* dc,
                         float* dgates, bool need_dh0 = true);

}  // namespace metalnn::cpu
