#include "metalnn/graph/program.h"

#include <cmath>

#include "metalnn/core/copy.h"
#include "metalnn/core/error.h"
#include "metalnn/core/half.h"

namespace metalnn::graph {

Frame Program::make_frame() const {
  Frame f;
  f.slots.resize((size_t)num_slots_);
  f.states.resize((size_t)num_states_);
  return f;
}

void Program::set_release(size_t i, std::vector<int> slots, std::vector<int> states) {
  if (i >= steps_.size()) fail(ErrorKind::Value, "graph", "step ", i, " out of range");
  for (int s : slots)
    if (s < 0 || s >= num_slots_) fail(ErrorKind::Value, "graph", "slot ", s, " out of range");
  for (int s : states)
    if (s < 0 || s >= num_states_) fail(ErrorKind::Value, "graph", "state ", s, " out of range");
  steps_[i].release_slots = std::move(slots);
  steps_[i].release_states = std::move(states);
}

void Program::set_outputs(size_t i, std::vector<int> slots) {
  if (i >= steps_.size()) fail(ErrorKind::Value, "graph", "step ", i, " out of range");
  for (int s : slots)
    if (s < 0 || s >= num_slots_) fail(ErrorKind::Value, "graph", "slot ", s, " out of range");
  steps_[i].outputs = std::move(slots);
}

namespace {

// The first NaN/Inf element of a float tensor: its index (-1 if none) and value. One host read.
struct NonFinite {
  int64_t index = -1;
  float value = 0.0f;
};

NonFinite first_non_finite(const Tensor& t) {
  if (t.dtype() != DType::float32 && t.dtype() != DType::float16) return {};
  Tensor h = to_host(t, "graph");
  const int64_t n = h.numel();
  for (int64_t i = 0; i < n; ++i) {
    float v = h.dtype() == DType::float32 ? h.data<float>()[i] : half_to_float(h.data<uint16_t>()[i]);
    if (!std::isfinite(v)) return {i, v};
  }
  return {};
}

void check_outputs(const Step& step, const Frame& frame) {
  for (int s : step.outputs) {
    const Tensor& t = frame.slots[(size_t)s];
    if (!t.defined()) continue;
    NonFinite bad = first_non_finite(t);
    if (bad.index < 0) continue;
    fail(ErrorKind::Runtime, "graph", "check_numerics: node '", step.label, "' produced ",
         std::isnan(bad.value) ? "NaN" : (bad.value > 0 ? "+Inf" : "-Inf"), " (output slot ", s, ", element ",
         bad.index, ")");
  }
}

}  // namespace

const Tensor& slot(const Frame& f, int i, const char* what) {
  if (i < 0 || (size_t)i >= f.slots.size() || !f.slots[(size_t)i].defined())
    fail(ErrorKind::Runtime, "graph", what, ": slot ", i, " is empty (graph compiled out of order)");
  return f.slots[(size_t)i];
}

void Program::run(Frame& frame) const {
  const bool check = check_numerics();
  for (const auto& step : steps_) {
    try {
      step.run(frame);
    } catch (const Error& e) {
      throw Error(e.kind(), "graph", "node '" + step.label + "': " + e.what());
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::Memory, "graph", "node '" + step.label + "': out of memory");
    }
    if (check) check_outputs(step, frame);  // throws a graph error that already names the node
    for (int s : step.release_slots) frame.slots[(size_t)s] = Tensor();
    for (int s : step.release_states) frame.states[(size_t)s].reset();
  }
}

}  // namespace metalnn::graph
