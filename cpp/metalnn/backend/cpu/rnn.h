// RNN layers on the CPU: input projections of all steps in one BLAS product, one recurrent
// product per step, gate nonlinearities fused into one pass per step, and weight gradients
// as products over the whole sequence. Math and layouts in ops/rnn.h.
#pragma once
#include <vector>

#include "metalnn/ops/rnn.h"

namespace metalnn::cpu {

// Fills y, the final states (x's dtype; c entries undefined for non-LSTM layers) and the
// state's float32 buffers (allocated by the caller).
void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last);

// dy / dh_last / dc_last entries may be undefined (zero). Outputs are allocated by the caller;
// undefined dh0 / dc0 entries are not wanted (the LSTM then skips the first step's product).
void rnn_backward(const RnnDescriptor& d, const Tensor& x, const Tensor& dy, const std::vector<Tensor>& dh_last,
                  const std::vector<Tensor>& dc_last, const std::vector<Tensor>& w, const RnnState& st,
                  const Tensor& dx, const std::vector<Tensor>& dw, const std::vector<Tensor>& dh0,
                  const std::vector<Tensor>& dc0);

}  // namespace metalnn::cpu
