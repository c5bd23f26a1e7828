// Graph steps of the RNN node (python/metalnn/graph/nodes_rnn.py). The node's weights are one
// flat parameter (every matrix of ops/rnn.h, in order, back to back) so the graph binds,
// checkpoints and optimises them like any layer's; the steps view the matrices in place.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/rnn.h"

namespace metalnn::graph::steps {

// y = the layers' output sequence (T, B, D*H), or with final_only the top layer's final
// hidden states (B, D*H). Keeps the RnnState in `state` when training (state >= 0).
// image_source: x is an image batch (N, C, 1, L) or (N, C, L) -- a 1-D convolution's output --
// read as the sequence (T = L, B = N, I = C) (cpu only for now).
Step rnn_forward(const std::string& label, int x, int y, int state, ParameterRef w, const RnnDescriptor& d,
                 bool final_only, bool image_source);
// From dy (the gradient of y): dx (slot, or -1 when nothing reads it; in x's layout) and the flat
// weight gradient dw (slot, or -1 when the weights are frozen).
Step rnn_backward(const std::string& label, int dy, int x, int state, int dx, int dw, ParameterRef w,
                  const RnnDescriptor& d, bool final_only, bool image_source);

// The matrices of a flat weight tensor, as views (shapes from d.weight_shapes()).
std::vector<Tensor> rnn_weight_views(const Tensor& flat, const RnnDescriptor& d, const char* op);

}  // namespace metalnn::graph::steps
