// States carry what a forward kernel hands to its gradient kernel (a dropout mask,
// pooling argmax, the loss's probabilities), as MPSState does. Each op family
// derives its own type; a gradient checks it got the right one.
#pragma once
#include <memory>
#include <string>

#include "metalnn/core/error.h"

namespace metalnn {

class State {
 public:
  virtual ~State() = default;
  // The forward op that produced this state, e.g. "max_pool2d_forward".
  virtual const char* source_op() const = 0;
};

template <class S>
const S& state_as(const std::shared_ptr<State>& state, const char* op, const char* expected_source) {
  if (!state) fail(ErrorKind::Type, op, "state is required (the state returned by ", expected_source, ")");
  auto* s = dynamic_cast<const S*>(state.get());
  if (!s)
    fail(ErrorKind::Type, op, "state must come from ", expected_source, ", got a state from ", state->source_op());
  return *s;
}

}  // namespace metalnn
