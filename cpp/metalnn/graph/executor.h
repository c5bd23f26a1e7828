// Runs a program batch after batch on a stream. At most `max_in_flight` batches are
// queued or running (2 = double buffering: the caller prepares batch k+1 while batch k
// runs); encode() blocks until a slot frees. Errors stay on their batch's handle.
//
// On CUDA the whole step (forward, gradients, updates) is captured once as a CUDA graph
// and replayed per batch (cuda::GraphRunner): the first batch of an executor runs eagerly
// (library handles, algorithm choices, lazy module loading) and probes whether the program
// can be captured; the second is recorded; later ones are one cudaGraphLaunch each, their
// inputs staged through pinned memory and copied asynchronously on the encoding thread's
// stream (overlapping the batch before). A new input shape or re-bound parameters record
// again. A program whose host code depends on each batch is recorded per batch instead; one
// that reads device memory on the host (a Python step), waits for the device or copies
// large host arrays inside a step runs eagerly for good. Graphs are an optimisation that
// does not change results. METALNN_CUDA_GRAPHS=0 keeps every batch eager.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "metalnn/core/stream.h"
#include "metalnn/graph/program.h"

namespace metalnn::cuda {
class GraphRunner;
}

namespace metalnn::graph {

class Batch {
 public:
  Frame frame;
  // CUDA: the pinned host copies of the inputs (by slot), kept until the batch has run.
  std::vector<std::pair<int, Tensor>> host_inputs;
  std::shared_ptr<Event> event;
  int64_t index = 0;
  // event is set when encode() returns; completion callbacks may run before that.
  void wait() const {
    if (event) event->wait();
  }
  bool done() const { return event && event->done(); }
};

class Executor {
 public:
  Executor(std::shared_ptr<const Program> program, int max_in_flight, Device device = {});
  ~Executor();
  // Places `inputs` in their slots and queues the program. The batch owns copies: on CUDA,
  // host inputs are staged through pinned memory, device inputs copied. `on_complete` runs on
  // the stream's completion thread once the batch has finished on the device (successfully or not).
  // run_here: the caller waits for the batch anyway (Graph.run); the CPU stream then runs it on
  // the calling thread when nothing is queued (Stream::run_here).
  std::shared_ptr<Batch> encode(const std::vector<std::pair<int, Tensor>>& inputs,
                                std::function<void(Batch&)> on_complete = nullptr, bool run_here = false);
  void synchronize();
  int in_flight() const;
  int max_in_flight() const { return max_in_flight_; }
  Device device() const { return device_; }
  // CUDA graphs: batches replayed as graphs, and why capture was turned off ("" if not).
  int64_t graph_launches() const;
  int64_t graph_captures() const;
  std::string graph_fallback_reason() const;
  // "eager", "probe", "replay" (captured once), "rerecord" (recorded per batch), "off".
  std::string graph_mode() const;

 private:
  void run_batch(Batch& batch);
  Tensor stage_input(const Tensor& t, Batch& batch, int slot);
  void off(const std::string& reason);  // turns capture off for good, noting why

  std::shared_ptr<const Program> program_;
  int max_in_flight_;
  Device device_;
  std::unique_ptr<Stream> stream_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  int64_t next_index_ = 0;
  // Used on the stream's worker thread only.
  std::shared_ptr<cuda::GraphRunner> graphs_;  // shared: complete type not needed here
  bool capture_ = false;
  [[maybe_unused]] bool rerecord_ = false;  // the program's host code depends on the batch
  [[maybe_unused]] int64_t batches_run_ = 0;  // read only in CUDA builds
  std::string fallback_reason_;
  // graph_mode() for other threads: 0 eager, 1 probe, 2 replay, 3 rerecord, 4 off.
  std::atomic<int> mode_{0};
};

// Bumped whenever a Parameter is bound or unbound: a captured graph addresses the tensors
// bound when it was recorded, so it records again after a change.
std::atomic<int64_t>& parameter_epoch();

}  // namespace metalnn::graph
