// CUDA-graph execution of a whole program (forward, gradients, updates) for the graph
// executor. Plain C++ interface (no CUDA headers) so graph/ code can include it.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "metalnn/core/tensor.h"

namespace metalnn::cuda {

class Arena;
struct Recording;

using HostCounter = std::shared_ptr<std::atomic<int64_t>>;
using InputCheck = std::function<void(const Tensor& host)>;

// Where a recorded kernel finds a per-batch counter: value = *ptr + offset when the graph
// runs (ptr null: not recording, use the host value).
struct DeviceCount {
  const int64_t* ptr = nullptr;
  int64_t offset = 0;
};

// Hooks for steps while a GraphRunner records a program on this thread (capture once).
// A step that used host value `used` of counter `c` and advanced it by `advance` asks
// where the device keeps that value; the graph advances the device copy itself, and
// each replay advances the host counter by the same amount.
DeviceCount record_counter(const HostCounter& c, int64_t used, int64_t advance);
// An op that checks a batch input's values on the host (class-index labels) registers the
// check: it runs on this recording's host copy now and on every replayed batch's before its
// launch. Returns false when not recording; throws when `input` is not a batch input.
bool record_input_check(const Tensor& input, const InputCheck& check);
bool recording();

// Counts for tests and benchmarks (process-wide, all runners).
struct GraphStats {
  int64_t captures = 0;        // capture-once recordings completed
  int64_t instantiations = 0;  // cudaGraphInstantiate calls
  int64_t launches = 0;        // cudaGraphLaunch calls
  int64_t rerecords = 0;       // batches recorded again (programs that cannot replay as captured)
};
GraphStats graph_stats();

// The executor's CUDA graphs. The first batch runs eagerly (probe). The next is recorded
// once with the stream in capture mode into fixed input buffers and a private arena, then
// every batch is one cudaGraphLaunch: its inputs are copied into the fixed buffers, device
// counters (dropout seeds, Adam's step) advance inside the graph, and the results are
// copied out of the graph's buffers into the batch's own tensors. A program whose host code
// depends on the batch (it reads an input on the host without registering a check) is
// recorded again for every batch and the instantiated graph updated (cudaGraphExecUpdate).
class GraphRunner {
 public:
  using Ranges = std::vector<std::pair<const void*, size_t>>;
  using Inputs = std::vector<std::pair<int, Tensor>>;  // slot, host copy (pinned)
  GraphRunner();
  ~GraphRunner();
  // Runs `body` eagerly and reports whether it could be captured: no host reads except of
  // the batch's `inputs`, no waits, no large host copies (else why, in reason()).
  bool probe(const std::function<void()>& body, const Ranges& inputs);

  // True when `slots` (the batch's input tensors, by slot) match the captured graph and
  // `epoch` (parameter bindings) is unchanged: replay() may run.
  bool can_replay(const std::vector<Tensor>& slots, int64_t epoch) const;
  // Records `body` over fixed copies of the frame's inputs and launches it. Throws what
  // `body` throws (host counters restored) or a RuntimeError; nothing is launched then.
  // input_check_failed() tells whether a registered input check threw.
  void capture(const std::function<void()>& body, std::vector<Tensor>& slots, const Inputs& host_inputs,
               int64_t epoch);
  // One launch of the captured graph for this batch; outputs land in `slots`. Throws (and
  // launches nothing) when an input check fails.
  void replay(std::vector<Tensor>& slots, const Inputs& host_inputs);
  // Per-batch recording (programs that cannot be captured once): as before capture-once.
  void rerecord(const std::function<void()>& body, const Ranges& inputs);
  bool captured() const { return exec_ != nullptr && once_; }
  bool input_check_failed() const { return input_check_failed_; }
  const std::string& reason() const { return reason_; }

  int64_t launches() const { return launches_; }
  int64_t captures() const { return captures_; }
  int64_t instantiations() const { return instantiations_; }

 private:
  struct Mirror {  // a host counter and its device copy
    HostCounter host;
    int64_t advance = 0;   // per batch
    int64_t shadow = 0;    // the device value once the queued work has run
    int index = 0;         // into counters_
  };
  void drop_exec();
  void sync_counters(void* stream);
  void launch(void* stream);

  void* exec_ = nullptr;  // cudaGraphExec_t
  bool once_ = false;     // exec_ is a capture-once graph
  std::shared_ptr<Arena> arena_;
  int64_t* counters_ = nullptr;  // device words of the mirrors
  std::vector<Mirror> mirrors_;
  std::vector<std::pair<int, InputCheck>> checks_;  // by input slot
  std::vector<std::pair<int, Tensor>> fixed_inputs_, fixed_outputs_;
  int64_t epoch_ = -1;
  bool input_check_failed_ = false;
  int64_t launches_ = 0, captures_ = 0, instantiations_ = 0;
  std::string reason_;
};

// METALNN_CUDA_GRAPHS=0 turns capture off (every batch runs eagerly); default on.
bool graphs_enabled();

// Queues a copy of host `src` (pinned) into device `dst` on the calling thread's stream.
void copy_to_device_async(const Tensor& dst, const Tensor& src, const char* op);

}  // namespace metalnn::cuda
