#include "metalnn/graph/executor.h"

#include "metalnn/core/error.h"

namespace metalnn::graph {

Executor::Executor(std::shared_ptr<const Program> program, int max_in_flight, Device device)
    : program_(std::move(program)), max_in_flight_(max_in_flight), device_(device), stream_(make_stream(device)) {
  if (max_in_flight < 1) fail(ErrorKind::Value, "graph", "max_in_flight must be >= 1, got ", max_in_flight);
}

Executor::~Executor() { synchronize(); }

std::shared_ptr<Batch> Executor::encode(const std::vector<std::pair<int, Tensor>>& inputs,
                                        std::function<void(Batch&)> on_complete) {
  auto batch = std::make_shared<Batch>();
  batch->frame = program_->make_frame();
  for (const auto& [slot_index, tensor] : inputs) {
    if (slot_index < 0 || (size_t)slot_index >= batch->frame.slots.size())
      fail(ErrorKind::Value, "graph", "input slot ", slot_index, " out of range");
    batch->frame.slots[(size_t)slot_index] = tensor;
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ < max_in_flight_; });
    ++in_flight_;
    batch->index = next_index_++;
  }
  CommandList list;
  auto program = program_;
  Batch* raw = batch.get();  // kept alive by the completion callback below
  list.add([program, raw] { program->run(raw->frame); });
  list.on_complete([this, batch, cb = std::move(on_complete)](const Event&) {
    if (cb) {
      try {
        cb(*batch);
      } catch (...) {  // a failing user callback must not stall the queue
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_flight_;
    }
    cv_.notify_all();
  });
  batch->event = stream_->submit(std::move(list));
  return batch;
}

void Executor::synchronize() { stream_->synchronize(); }

int Executor::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_flight_;
}

}  // namespace metalnn::graph
