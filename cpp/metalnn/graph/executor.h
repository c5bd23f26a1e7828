// Runs a program batch after batch on a stream. At most `max_in_flight` batches are
// queued or running (2 = double buffering: the caller prepares batch k+1 while batch k
// runs); encode() blocks until a slot frees. Errors stay on their batch's handle.
#pragma once
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "metalnn/core/stream.h"
#include "metalnn/graph/program.h"

namespace metalnn::graph {

class Batch {
 public:
  Frame frame;
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
  // Places `inputs` in their slots and queues the program. `on_complete` runs on the
  // stream's thread once the batch has finished (successfully or not).
  std::shared_ptr<Batch> encode(const std::vector<std::pair<int, Tensor>>& inputs,
                                std::function<void(Batch&)> on_complete = nullptr);
  void synchronize();
  int in_flight() const;
  int max_in_flight() const { return max_in_flight_; }
  Device device() const { return device_; }

 private:
  std::shared_ptr<const Program> program_;
  int max_in_flight_;
  Device device_;
  std::unique_ptr<Stream> stream_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  int64_t next_index_ = 0;
};

}  // namespace metalnn::graph
