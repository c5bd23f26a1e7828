// Graph steps of the normalization family: each reads its slots, calls the op and writes its
// slots; forward states go to Frame::states for the gradient steps.
#pragma once
#include <string>

#include "metalnn/graph/program.h"
#include "metalnn/ops/normalization.h"

namespace metalnn::graph::steps {

// Training: batch statistics, and the running statistics (when given) move by momentum in
// place. Inference: the running statistics normalise.
Step batch_norm_forward(const std::string& label, int x, int y, int state, ParameterRef gamma, ParameterRef beta,
                        ParameterRef running_mean, ParameterRef running_var, bool training, double momentum,
                        double epsilon);
// Slots < 0 are not written (dx unread, or gamma / beta not trained).
Step batch_norm_backward(const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx, int dgamma,
                         int dbeta);
// op: group_norm_forward, instance_norm_forward or layer_norm_forward (error messages).
Step group_norm_forward(const std::string& label, int x, int y, int state, ParameterRef gamma, ParameterRef beta,
                        int64_t groups, double epsilon, const char* op);
Step group_norm_backward(const std::string& label, int dy, int x, int state, ParameterRef gamma, int dx, int dgamma,
                         int dbeta, const char* op);
Step cross_channel_norm_forward(const std::string& label, int x, int y, const CrossChannelNormDescriptor& d);
Step cross_channel_norm_backward(const std::string& label, int dy, int x, int dx, const CrossChannelNormDescriptor& d);

}  // namespace metalnn::graph::steps
