#include "metalnn/graph/steps_counted.h"

#include "metalnn/core/error.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/graph_capture.h"
#endif

namespace metalnn::graph::steps {
namespace {

const Tensor& param(const ParameterRef& p) {
  if (!p->value.defined()) fail(ErrorKind::Runtime, "graph", "parameter '", p->name, "' is not loaded");
  return p->value;
}

// Adam's tensors: weights, gradients, m, v and v_max (empty without amsgrad).
struct AdamTensors {
  std::vector<Tensor> w, g, m, v, v_max;
};

AdamTensors gather_adam(const Frame& f, const std::vector<UpdateTarget>& targets) {
  AdamTensors a;
  std::vector<Tensor>* lists[3] = {&a.m, &a.v, &a.v_max};
  for (const auto& t : targets) {
    a.w.push_back(param(t.value));
    a.g.push_back(slot(f, t.gradient_slot, "input"));
    for (size_t i = 0; i < 3; ++i) lists[i]->push_back(i < t.state.size() && t.state[i] ? param(t.state[i]) : Tensor());
  }
  // A state no target has (v_max without amsgrad) goes as an empty list.
  for (auto* list : lists) {
    bool any = false;
    for (const auto& t : *list) any = any || t.defined();
    if (!any) list->clear();
  }
  return a;
}

}  // namespace

Step counted_dropout_forward(const std::string& label, int x, int y, int state, double keep_probability,
                             uint64_t seed, HostCounter counter) {
  return Step{label, [=](Frame& f) {
    DropoutDescriptor d;
    d.keep_probability = keep_probability;
    const int64_t used = counter->fetch_add(1);
    d.seed = mnn_dropout_key(seed ^ mnn_dropout_key((uint64_t)used));
#ifdef METALNN_HAS_CUDA
    cuda::DeviceCount dc = cuda::record_counter(counter, used, 1);
    d.device_counter = dc.ptr;
    d.counter_offset = dc.offset;
    d.base_seed = seed;
#endif
    auto [result, s] = metalnn::dropout_forward(slot(f, x, "input"), d);
    f.slots[(size_t)y] = result;
    f.states[(size_t)state] = s;
  }, {}, {}, {}};
}

Step counted_adam_update(const std::string& label, std::vector<UpdateTarget> targets, const AdamDescriptor& d,
                         HostCounter step_counter) {
  return Step{label, [=](Frame& f) {
    AdamTensors a = gather_adam(f, targets);
    const int64_t step = step_counter->load() + 1;
    AdamDescriptor desc = d;
#ifdef METALNN_HAS_CUDA
    cuda::DeviceCount dc = cuda::record_counter(step_counter, step - 1, 1);
    desc.device_step = dc.ptr;
    desc.device_step_offset = dc.offset + 1;
#endif
    metalnn::adam_step_many(a.w, a.g, a.m, a.v, a.v_max, step, desc);
    // Advanced only once the update is queued, so a rejected batch is not counted.
    step_counter->store(step);
  }, {}, {}, {}};
}

}  // namespace metalnn::graph::steps
