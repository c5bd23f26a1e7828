#include "metalnn/graph/program.h"

#include "metalnn/core/error.h"

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

const Tensor& slot(const Frame& f, int i, const char* what) {
  if (i < 0 || (size_t)i >= f.slots.size() || !f.slots[(size_t)i].defined())
    fail(ErrorKind::Runtime, "graph", what, ": slot ", i, " is empty (graph compiled out of order)");
  return f.slots[(size_t)i];
}

void Program::run(Frame& frame) const {
  for (const auto& step : steps_) {
    try {
      step.run(frame);
    } catch (const Error& e) {
      throw Error(e.kind(), "graph", "node '" + step.label + "': " + e.what());
    } catch (const std::bad_alloc&) {
      throw Error(ErrorKind::Memory, "graph", "node '" + step.label + "': out of memory");
    }
    for (int s : step.release_slots) frame.slots[(size_t)s] = Tensor();
    for (int s : step.release_states) frame.states[(size_t)s].reset();
  }
}

}  // namespace metalnn::graph
