// RNN layers on CUDA: the CPU backend's schedule (input projections of all steps in one cuBLAS
// product, per step the recurrent product(s) and one fused gate kernel, whole-sequence weight-
// gradient products), on the current stream. float16 data and weights are widened first.
#pragma once
#include <vector>

#include "metalnn/ops/rnn.h"

namespace metalnn::cuda {

void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last);

void rnn_backward(const RnnDescriptor& d, const Tensor& x, const Tensor& dy, const std::vector<Tensor>& dh_last,
                  const std::vector<Tensor>& dc_last, const std::vector<Tensor>& w, const RnnState& st,
                  const Tensor& dx, const std::vector<Tensor>& dw, const std::vector<Tensor>& dh0,
                  const std::vector<Tensor>& dc0);

}  // namespace metalnn::cuda
