#include "metalnn/ops/optimizer.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "metalnn/backend/cpu/optimizer.h"
#include "metalnn/backend/cuda/optimizer.h"
#include "metalnn/backend/metal/optimizer.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"

namespace metalnn {
namespace {

// Finite and representable as float32 (1e300 would become inf in the kernels).
void finite_float(const char* op, const char* arg, double v) {
  if (!std::isfinite(v) || std::fabs(v) > FLT_MAX)
    fail(ErrorKind::Value, op, arg, " must be finite (and fit float32), got ", v);
}

void non_negative(const char* op, const char* arg, double v) {
  finite_float(op, arg, v);
  if (v < 0) fail(ErrorKind::Value, op, arg, " must be >= 0, got ", v);
}

// 0 <= v < 1 (momentum, betas, decay).
void unit_interval(const char* op, const char* arg, double v) {
  if (!(v >= 0.0 && v < 1.0)) fail(ErrorKind::Value, op, arg, " must be in [0, 1), got ", v);
}

void positive(const char* op, const char* arg, double v) {
  finite_float(op, arg, v);
  if (!(v > 0.0 && (float)v > 0.f)) fail(ErrorKind::Value, op, arg, " must be > 0 (in float32), got ", v);
}

// Names an element of a list argument in the multi-tensor forms: "weights[3]".
std::string arg_name(const char* arg, bool many, size_t i) {
  return many ? std::string(arg) + "[" + std::to_string(i) + "]" : std::string(arg);
}

struct StateList {
  const char* name;
  const std::vector<Tensor>* tensors;
  bool required;
  const char* why;  // why it is required, for the error message
};

struct Span {
  uintptr_t begin, end;
  bool writable;
  std::string name;
};

// Checks every tensor (dtype, shape, device, memory overlap) and builds the CPU slots.
// Nothing is written here, so a failure leaves weights and state untouched.
std::vector<cpu::OptimizerSlot> check_tensors(const char* op, bool many, const std::vector<Tensor>& weights,
                                              const std::vector<Tensor>& gradients,
                                              std::initializer_list<StateList> states) {
  size_t count = weights.size();
  if (many && count == 0) fail(ErrorKind::Value, op, "weights must be a non-empty list");
  if (gradients.size() != count)
    fail(ErrorKind::Value, op, "gradients must have one tensor per weight (", count, "), got ", gradients.size());
  for (auto& s : states) {
    bool given = !s.tensors->empty();
    if (!given && s.required) fail(ErrorKind::Value, op, s.name, " is required", s.why);
    if (given && s.tensors->size() != count)
      fail(ErrorKind::Value, op, s.name, " must have one tensor per weight (", count, "), got ", s.tensors->size());
  }
  std::vector<cpu::OptimizerSlot> slots(count);
  std::vector<Span> spans;
  auto add_span = [&](const Tensor& t, bool writable, std::string name) {
    if (t.nbytes() == 0) return;
    auto b = (uintptr_t)t.raw();
    spans.push_back({b, b + t.nbytes(), writable, std::move(name)});
  };
  for (size_t i = 0; i < count; ++i) {
    const Tensor& w = weights[i];
    const Tensor& g = gradients[i];
    std::string wn = arg_name("weights", many, i), gn = arg_name("gradients", many, i);
    if (!w.defined()) fail(ErrorKind::Type, op, wn, " is required");
    if (!g.defined()) fail(ErrorKind::Type, op, gn, " is required");
    check::floating(op, wn.c_str(), w);
    check::same_dtype(op, gn.c_str(), g, wn.c_str(), w);
    check::same_device(op, gn.c_str(), g, wn.c_str(), w);
    check::shape(op, gn.c_str(), g, w.shape());
    add_span(w, true, wn);
    add_span(g, false, gn);
    slots[i] = {&w, &g, {nullptr, nullptr, nullptr}};
    int k = 0;
    for (auto& s : states) {
      if (!s.tensors->empty()) {
        const Tensor& t = (*s.tensors)[i];
        std::string sn = arg_name(s.name, many, i);
        if (!t.defined()) fail(ErrorKind::Type, op, sn, " is required");
        check::dtype(op, sn.c_str(), t, DType::float32);
        check::same_device(op, sn.c_str(), t, wn.c_str(), w);
        check::shape(op, sn.c_str(), t, w.shape());
        add_span(t, true, sn);
        slots[i].state[k] = t.data<float>();
      }
      ++k;
    }
  }
  // Sorted by address, an overlap involving a written tensor is found in one sweep.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  const Span *far_any = nullptr, *far_written = nullptr;
  for (const Span& s : spans) {
    const Span* hit = s.writable ? far_any : far_written;
    if (hit && s.begin < hit->end)
      fail(ErrorKind::Value, op, s.name, " must not share memory with ", hit->name,
           " (each is read or updated separately)");
    if (!far_any || s.end > far_any->end) far_any = &s;
    if (s.writable && (!far_written || s.end > far_written->end)) far_written = &s;
  }
  return slots;
}

// The Metal encoders bind state as tensors (the GPU needs their buffers), not raw pointers.
std::vector<metal::OptimizerSlot> metal_slots(const std::vector<cpu::OptimizerSlot>& slots,
                                              std::initializer_list<const std::vector<Tensor>*> states) {
  std::vector<metal::OptimizerSlot> out(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    out[i] = {slots[i].weights, slots[i].gradients, {nullptr, nullptr, nullptr}};
    int k = 0;
    for (const auto* s : states) {
      if (s && !s->empty()) out[i].state[k] = &(*s)[i];
      ++k;
    }
  }
  return out;
}

// Tensor indices grouped by learning-rate scale, in order of first appearance: each group is
// one kernel call with learning_rate * scale. Checked before anything is written.
std::vector<std::pair<double, std::vector<size_t>>> scale_groups(const char* op, const OptimizerDescriptor& d,
                                                                 size_t count) {
  std::vector<std::pair<double, std::vector<size_t>>> groups;
  const auto& scales = d.learning_rate_scales;
  if (scales.empty()) {
    groups.push_back({1.0, {}});
    for (size_t i = 0; i < count; ++i) groups[0].second.push_back(i);
    return groups;
  }
  if (scales.size() != count)
    fail(ErrorKind::Value, op, "learning_rate_scales must have one value per weight (", count, "), got ",
         scales.size());
  for (size_t i = 0; i < count; ++i) {
    const double v = scales[i];
    if (!std::isfinite(v) || v < 0 || d.learning_rate * v > FLT_MAX)
      fail(ErrorKind::Value, op, "learning_rate_scales[", i, "] must be finite and >= 0 (learning_rate * scale ",
           "must fit float32), got ", v);
    auto it = std::find_if(groups.begin(), groups.end(), [v](const auto& g) { return g.first == v; });
    if (it == groups.end()) groups.push_back({v, {i}});
    else it->second.push_back(i);
  }
  return groups;
}

template <class T>
std::vector<T> pick(const std::vector<T>& v, const std::vector<size_t>& idx) {
  std::vector<T> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(v[i]);
  return out;
}

// The descriptor of one scale group: learning_rate * scale, no per-tensor scales left.
template <class D>
D scaled(const D& desc, double scale) {
  D d = desc;
  d.base.learning_rate *= scale;
  d.base.learning_rate_scales.clear();
  return d;
}

void check_step(const char* op, int64_t step) {
  if (step < 1) fail(ErrorKind::Value, op, "step must be >= 1 (it is 1-based: the first update is step 1), got ", step);
}

void run_sgd(const char* op, bool many, const std::vector<Tensor>& w, const std::vector<Tensor>& g,
             const std::vector<Tensor>& buf, const SgdDescriptor& desc) {
  desc.validate(op);
  auto slots = check_tensors(op, many, w, g, {{"momentum_buffer", &buf, desc.momentum > 0, " when momentum > 0"}});
  for (const auto& group : scale_groups(op, desc.base, w.size())) {
    const std::vector<size_t>& idx = group.second;
    auto params = scaled(desc, group.first).params(!buf.empty());
    auto part = pick(slots, idx);
    dispatch(op, w[0].device(), [&] { cpu::sgd_step(part, params); },
             [&] { metal::sgd_step(pick(metal_slots(slots, {&buf}), idx), params); },
             cuda_kernel([&] { cuda::sgd_step(part, params); }));
  }
}

void run_adam(const char* op, bool many, const std::vector<Tensor>& w, const std::vector<Tensor>& g,
              const std::vector<Tensor>& m, const std::vector<Tensor>& v, const std::vector<Tensor>& v_max,
              int64_t step, const AdamDescriptor& desc) {
  desc.validate(op);
  check_step(op, step);
  // v_max is only read and written with amsgrad; without it the list is ignored.
  static const std::vector<Tensor> kNone;
  auto slots = check_tensors(op, many, w, g,
                             {{"m", &m, true, " (Adam's first moment)"}, {"v", &v, true, " (Adam's second moment)"},
                              {"v_max", desc.amsgrad ? &v_max : &kNone, desc.amsgrad, " when amsgrad=True"}});
  for (const auto& group : scale_groups(op, desc.base, w.size())) {
    const std::vector<size_t>& idx = group.second;
    const AdamDescriptor group_desc = scaled(desc, group.first);
    auto params = group_desc.params(step);
    auto part = pick(slots, idx);
    dispatch(op, w[0].device(), [&] { cpu::adam_step(part, params); },
             [&] { metal::adam_step(pick(metal_slots(slots, {&m, &v, desc.amsgrad ? &v_max : nullptr}), idx), params); },
             cuda_kernel([&] {
               cuda::adam_step(part, params,
                               {desc.device_step, desc.device_step_offset, group_desc.base.learning_rate, desc.beta1,
                                desc.beta2});
             }));
  }
}

void run_rmsprop(const char* op, bool many, const std::vector<Tensor>& w, const std::vector<Tensor>& g,
                 const std::vector<Tensor>& s, const RmsPropDescriptor& desc) {
  desc.validate(op);
  auto slots = check_tensors(op, many, w, g, {{"s", &s, true, " (the running mean of g^2)"}});
  for (const auto& group : scale_groups(op, desc.base, w.size())) {
    const std::vector<size_t>& idx = group.second;
    auto params = scaled(desc, group.first).params();
    auto part = pick(slots, idx);
    dispatch(op, w[0].device(), [&] { cpu::rmsprop_step(part, params); },
             [&] { metal::rmsprop_step(pick(metal_slots(slots, {&s}), idx), params); },
             cuda_kernel([&] { cuda::rmsprop_step(part, params); }));
  }
}

std::vector<Tensor> one(const Tensor& t) { return t.defined() ? std::vector<Tensor>{t} : std::vector<Tensor>{}; }

}  // namespace

void OptimizerDescriptor::validate(const char* op) const {
  non_negative(op, "learning_rate", learning_rate);
  finite_float(op, "gradient_rescale", gradient_rescale);
  if (apply_gradient_clipping) {
    // Infinite bounds clip one side only; NaN bounds are meaningless.
    if (std::isnan(gradient_clip_min) || std::isnan(gradient_clip_max) || !(gradient_clip_min <= gradient_clip_max))
      fail(ErrorKind::Value, op, "gradient_clip must be (min, max) with min <= max, got (", gradient_clip_min, ", ",
           gradient_clip_max, ")");
  }
  if (regularization < MNN_REGULARIZATION_NONE || regularization > MNN_REGULARIZATION_L2)
    fail(ErrorKind::Value, op, "regularization: unknown type ", (int)regularization);
  non_negative(op, "weight_decay", regularization_scale);
}

MnnOptimizerParams OptimizerDescriptor::params() const {
  MnnOptimizerParams p{};
  p.learning_rate = (float)learning_rate;
  p.gradient_rescale = (float)gradient_rescale;
  p.apply_gradient_clipping = apply_gradient_clipping ? 1u : 0u;
  p.gradient_clip_min = (float)gradient_clip_min;
  p.gradient_clip_max = (float)gradient_clip_max;
  // A zero scale skips the term, so an infinite weight is not turned into NaN by 0 * inf.
  p.regularization_type = regularization_scale > 0 ? (uint32_t)regularization : (uint32_t)MNN_REGULARIZATION_NONE;
  p.regularization_scale = (float)regularization_scale;
  return p;
}

void SgdDescriptor::validate(const char* op) const {
  base.validate(op);
  unit_interval(op, "momentum", momentum);
}

MnnSgdParams SgdDescriptor::params(bool has_momentum_buffer) const {
  MnnSgdParams p{};
  p.common = base.params();
  p.momentum = (float)momentum;
  p.nesterov = nesterov ? 1u : 0u;
  p.has_momentum_buffer = has_momentum_buffer ? 1u : 0u;
  return p;
}

void AdamDescriptor::validate(const char* op) const {
  base.validate(op);
  unit_interval(op, "beta1", beta1);
  unit_interval(op, "beta2", beta2);
  positive(op, "epsilon", epsilon);
}

MnnAdamParams AdamDescriptor::params(int64_t step) const {
  MnnAdamParams p{};
  p.common = base.params();
  p.beta1 = (float)beta1;
  p.beta2 = (float)beta2;
  p.one_minus_beta1 = (float)(1.0 - beta1);
  p.one_minus_beta2 = (float)(1.0 - beta2);
  p.epsilon = (float)epsilon;
  double t = (double)step;
  p.lr_t = (float)(base.learning_rate * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t)));
  p.amsgrad = amsgrad ? 1u : 0u;
  return p;
}

void RmsPropDescriptor::validate(const char* op) const {
  base.validate(op);
  unit_interval(op, "decay", decay);
  positive(op, "epsilon", epsilon);
}

MnnRmsPropParams RmsPropDescriptor::params() const {
  MnnRmsPropParams p{};
  p.common = base.params();
  p.decay = (float)decay;
  p.one_minus_decay = (float)(1.0 - decay);
  p.epsilon = (float)epsilon;
  return p;
}

void sgd_step(const Tensor& weights, const Tensor& gradients, const Tensor& momentum_buffer,
              const SgdDescriptor& desc) {
  run_sgd("sgd_step", false, {weights}, {gradients}, one(momentum_buffer), desc);
}

void adam_step(const Tensor& weights, const Tensor& gradients, const Tensor& m, const Tensor& v,
               const Tensor& v_max, int64_t step, const AdamDescriptor& desc) {
  run_adam("adam_step", false, {weights}, {gradients}, {m}, {v}, one(v_max), step, desc);
}

void rmsprop_step(const Tensor& weights, const Tensor& gradients, const Tensor& s, const RmsPropDescriptor& desc) {
  run_rmsprop("rmsprop_step", false, {weights}, {gradients}, {s}, desc);
}

void sgd_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                   const std::vector<Tensor>& momentum_buffers, const SgdDescriptor& desc) {
  run_sgd("sgd_step_many", true, weights, gradients, momentum_buffers, desc);
}

void adam_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                    const std::vector<Tensor>& m, const std::vector<Tensor>& v, const std::vector<Tensor>& v_max,
                    int64_t step, const AdamDescriptor& desc) {
  run_adam("adam_step_many", true, weights, gradients, m, v, v_max, step, desc);
}

void rmsprop_step_many(const std::vector<Tensor>& weights, const std::vector<Tensor>& gradients,
                       const std::vector<Tensor>& s, const RmsPropDescriptor& desc) {
  run_rmsprop("rmsprop_step_many", true, weights, gradients, s, desc);
}

}  // namespace metalnn
