// Graph steps that advance a per-batch counter (dropout's mask seed, Adam's step). While a
// CUDA graph is recorded once for replay, they also tell the kernels where the device keeps
// the counter (cuda::record_counter), so each replay draws a fresh mask and a new bias
// correction; the host counter (saved with the graph) advances as in an eager run.
#pragma once
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "metalnn/graph/steps.h"

namespace metalnn::graph::steps {

using HostCounter = std::shared_ptr<std::atomic<int64_t>>;

// Each run draws a fresh mask: seed = key(base seed ^ key(counter)), key = mnn_dropout_key;
// the counter advances by one per run.
Step counted_dropout_forward(const std::string& label, int x, int y, int state, double keep_probability,
                             uint64_t seed, HostCounter counter);
// Adam with t = counter + 1; the counter advances only when the update is queued.
Step counted_adam_update(const std::string& label, std::vector<UpdateTarget> targets, const AdamDescriptor& d,
                         HostCounter step_counter);

}  // namespace metalnn::graph::steps
