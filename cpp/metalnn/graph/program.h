// A compiled graph: an ordered list of steps over numbered tensor slots. The graph
// builder (Python) resolves shapes, padding, fusion and slot lifetimes; the program
// only runs steps and drops each slot after its last use, so the caching allocator
// hands that memory to later steps (the memory plan).
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn::graph {

// One batch's working set.
struct Frame {
  std::vector<Tensor> slots;
  std::vector<std::shared_ptr<State>> states;
};

// A trainable tensor the graph binds (weights, biases, optimizer state). Shared so a
// data source can swap it (load/purge) without recompiling.
struct Parameter {
  Tensor value;
  std::string name;
};
using ParameterRef = std::shared_ptr<Parameter>;

struct Step {
  std::string label;                 // the node that owns the step, for error messages
  std::function<void(Frame&)> run;
  std::vector<int> release_slots;    // slots whose last use is this step
  std::vector<int> release_states;
  std::vector<int> outputs;          // slots it writes, scanned for NaN/Inf in check mode
};

class Program {
 public:
  Program(int num_slots, int num_states) : num_slots_(num_slots), num_states_(num_states) {}
  void add(Step step) { steps_.push_back(std::move(step)); }
  size_t size() const { return steps_.size(); }
  const Step& step(size_t i) const { return steps_[i]; }
  // Set by the builder once slot lifetimes are known.
  void set_release(size_t i, std::vector<int> slots, std::vector<int> states);
  void set_outputs(size_t i, std::vector<int> slots);
  // Check mode: after each step its outputs are scanned, and the first step producing
  // NaN or Inf fails the batch naming its node (slow: reads every output on the host).
  void set_check_numerics(bool on) { check_numerics_.store(on); }
  bool check_numerics() const { return check_numerics_.load(); }
  Frame make_frame() const;
  // Runs every step; an error is re-raised with the failing node's label in front.
  void run(Frame& frame) const;

 private:
  int num_slots_, num_states_;
  std::vector<Step> steps_;
  std::atomic<bool> check_numerics_{false};
};

// Reads slot `i`, raising a clear error when a step runs before its input exists.
const Tensor& slot(const Frame& f, int i, const char* what);

}  // namespace metalnn::graph
