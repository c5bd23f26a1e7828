// RNN layers on Metal (kernels in cpp/kernels/rnn.metal): the CPU backend's schedule, every
// product a tiled rnn_gemm dispatch and every gate update a step kernel, in one command buffer.
#pragma once
#include <vector>

#include "metalnn/ops/rnn.h"

namespace metalnn::metal {

void rnn_forward(const RnnDescriptor& d, const Tensor& x, const std::vector<Tensor>& w,
                 const std::vector<Tensor>& h0, const std::vector<Tensor>& c0, RnnState& st, const Tensor& y,
                 const std::vector<Tensor>& h_last, const std::vector<Tensor>& c_last);

void rnn_backward(const RnnDescriptor& d, const Tensor& x, const Tensor& dy, const std::vector<Tensor>& dh_last,
                  const std::vector<Tensor>& dc_last, const std::vector<Tensor>& w, const RnnState& st,
                  const Tensor& dx, const std::vector<Tensor>& dw, const std::vector<Tensor>& dh0,
                  const std::vector<Tensor>& dc0);

}  // namespace metalnn::metal
