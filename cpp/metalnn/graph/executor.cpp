#include "metalnn/graph/executor.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "metalnn/core/copy.h"
#include "metalnn/core/error.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/allocator.h"
#include "metalnn/backend/cuda/graph_capture.h"
#endif

namespace metalnn::graph {

Executor::Executor(std::shared_ptr<const Program> program, int max_in_flight, Device device)
    : program_(std::move(program)), max_in_flight_(max_in_flight), device_(device),
      // CPU: a thread waiting for a batch that has not started runs it itself (encode + wait latency).
      stream_(device.type == DeviceType::cpu ? std::make_unique<CpuStream>(true) : make_stream(device)) {
  if (max_in_flight < 1) fail(ErrorKind::Value, "graph", "max_in_flight must be >= 1, got ", max_in_flight);
#ifdef METALNN_HAS_CUDA
  if (device.type == DeviceType::cuda && cuda::graphs_enabled()) {
    graphs_ = std::make_shared<cuda::GraphRunner>();
    capture_ = true;
    mode_ = 1;
  }
#endif
}

Executor::~Executor() {
  synchronize();
  // The runner's graph and arena go only after the GPU is done with them.
}

void Executor::run_batch(Batch& batch) {
  Frame& frame = batch.frame;
#ifdef METALNN_HAS_CUDA
  // Check mode reads every output on the host, which a captured graph cannot record.
  if (capture_ && !program_->check_numerics()) {
    cuda::GraphRunner::Ranges inputs;
    for (const auto& t : frame.slots)
      if (t.defined()) inputs.emplace_back(t.raw(), t.nbytes());
    // The first batch runs eagerly: it creates library handles and picks algorithms (which
    // cannot happen inside a capture) and shows whether the program reads device memory on
    // the host (a Python step), which no capture can record.
    if (batches_run_++ == 0) {
      capture_ = graphs_->probe([&] { program_->run(frame); }, inputs);
      if (!capture_) off(graphs_->reason());
      else mode_ = 2;
      return;
    }
    if (!rerecord_) {
      const int64_t epoch = parameter_epoch().load();
      if (graphs_->can_replay(frame.slots, epoch)) {
        graphs_->replay(frame.slots, batch.host_inputs);  // an input check may throw: nothing ran
        frame.states.clear();
        return;
      }
      Frame initial = frame;  // the inputs, for an eager rerun
      try {
        graphs_->capture([&] { program_->run(frame); }, frame.slots, batch.host_inputs, epoch);
        frame.states.clear();
        return;
      } catch (const std::exception& e) {
        frame = std::move(initial);
        // Bad input (labels out of range): the eager run raises the op's own error; the next
        // batch records again.
        if (graphs_->input_check_failed()) {
          program_->run(frame);
          return;
        }
        // The host code depends on the batch (it reads an input on the host): record per batch.
        rerecord_ = true;
        mode_ = 3;
        fallback_reason_ = std::string("recorded per batch: ") + e.what();
        if (std::getenv("METALNN_CUDA_GRAPH_LOG"))
          std::fprintf(stderr, "metalnn: CUDA graph %s\n", fallback_reason_.c_str());
      }
    }
    Frame initial = frame;
    try {
      graphs_->rerecord([&] { program_->run(frame); }, inputs);
      return;
    } catch (const std::exception& e) {
      // Not expected after a clean probe. The rerun repeats host-side counters' advance
      // (a dropout mask may differ from a pure eager run); a real error raises here.
      frame = std::move(initial);
      program_->run(frame);
      off(e.what());
      return;
    }
  }
#endif
  program_->run(frame);
}

Tensor Executor::stage_input(const Tensor& t, Batch& batch, int slot) {
#ifdef METALNN_HAS_CUDA
  if (device_.type == DeviceType::cuda) {
    if (t.device().type != DeviceType::cpu) return to_device(to_host(t, "encode_batch"), device_, "encode_batch");
    // Pinned staging: the copy to the device is queued on this thread's stream and overlaps
    // the batch before; the executor's stream waits for it (CudaStream::submit).
    Tensor host(cuda::pinned_allocate(t.nbytes()), t.shape(), t.dtype());
    if (t.nbytes()) std::memcpy(host.raw(), t.raw(), t.nbytes());
    Tensor dev = Tensor::empty(t.shape(), t.dtype(), device_);
    cuda::copy_to_device_async(dev, host, "encode_batch");
    batch.host_inputs.emplace_back(slot, host);
    return dev;
  }
#endif
  (void)batch;
  (void)slot;
  return t;
}

void Executor::off(const std::string& reason) {
  capture_ = false;
  mode_ = 4;
  fallback_reason_ = reason;
  if (std::getenv("METALNN_CUDA_GRAPH_LOG"))
    std::fprintf(stderr, "metalnn: CUDA graphs off for this program: %s\n", reason.c_str());
}

std::shared_ptr<Batch> Executor::encode(const std::vector<std::pair<int, Tensor>>& inputs,
                                        std::function<void(Batch&)> on_complete, bool run_here) {
  auto batch = std::make_shared<Batch>();
  batch->frame = program_->make_frame();
  for (const auto& [slot_index, tensor] : inputs) {
    if (slot_index < 0 || (size_t)slot_index >= batch->frame.slots.size())
      fail(ErrorKind::Value, "graph", "input slot ", slot_index, " out of range");
    batch->frame.slots[(size_t)slot_index] = stage_input(tensor, *batch, slot_index);
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ < max_in_flight_; });
    ++in_flight_;
    batch->index = next_index_++;
  }
  CommandList list;
  Batch* raw = batch.get();  // kept alive by the completion callback below
  list.add([this, raw] { run_batch(*raw); });
  batch->event = run_here ? stream_->run_here(std::move(list)) : stream_->submit(std::move(list));
  // On the event, not the list: a device stream completes it once the GPU has finished
  // (device errors included), which is when results may be read.
  batch->event->on_complete([this, batch, cb = std::move(on_complete)](const Event&) {
    batch->host_inputs.clear();  // the GPU is done with the staging copies
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
  return batch;
}

void Executor::synchronize() { stream_->synchronize(); }

int Executor::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_flight_;
}

int64_t Executor::graph_launches() const {
#ifdef METALNN_HAS_CUDA
  if (graphs_) return graphs_->launches();
#endif
  return 0;
}

int64_t Executor::graph_captures() const {
#ifdef METALNN_HAS_CUDA
  if (graphs_) return graphs_->captures();
#endif
  return 0;
}

std::string Executor::graph_fallback_reason() const { return fallback_reason_; }

std::string Executor::graph_mode() const {
  static const char* const kModes[] = {"eager", "probe", "replay", "rerecord", "off"};
  return kModes[mode_.load()];
}

std::atomic<int64_t>& parameter_epoch() {
  static std::atomic<int64_t> epoch{0};
  return epoch;
}

}  // namespace metalnn::graph
