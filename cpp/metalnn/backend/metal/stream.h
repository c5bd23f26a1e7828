// Command buffers and the Metal stream.
//
// A Batch is one MTL::CommandBuffer being recorded: kernels encode into its compute
// encoder and park what must outlive the GPU work (tensor blocks, wrapped buffers) on it.
// MetalStream gives every submitted CommandList one Batch: the list's commands run on an
// encoding thread with that batch current, then it is committed; its completed handler
// (addCompletedHandler) turns the command buffer's status into the list's Event, a GPU
// error becoming a metalnn::Error that Event::wait() rethrows.
#pragma once
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include "metalnn/backend/metal/mtl.h"
#include "metalnn/core/allocator.h"
#include "metalnn/core/stream.h"

namespace metalnn::metal {

class Batch {
 public:
  explicit Batch(MTL::CommandQueue* queue);
  // Ends an open encoder; a batch never committed (its list failed) is dropped unrun.
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // The compute encoder, opened on first use.
  MTL::ComputeCommandEncoder* encoder();
  void keep(std::shared_ptr<Buffer> block) { blocks_.push_back(std::move(block)); }
  void keep(Retained<MTL::Buffer> buffer) { buffers_.push_back(std::move(buffer)); }
  // Runs on the completion thread with ok = no GPU error, before `done` (copy-backs).
  void on_completed(std::function<void(bool ok)> fn) { completed_.push_back(std::move(fn)); }
  bool empty() const { return !encoder_ && !committed_ && completed_.empty(); }

  // Ends encoding and commits; `done` gets nullptr or the command buffer's error.
  void commit(std::function<void(std::exception_ptr)> done);

 private:
  Retained<MTL::CommandBuffer> cb_;
  Retained<MTL::ComputeCommandEncoder> encoder_;
  std::vector<std::shared_ptr<Buffer>> blocks_;
  std::vector<Retained<MTL::Buffer>> buffers_;
  std::vector<std::function<void(bool)>> completed_;
  bool committed_ = false;
};

// The batch kernels on this thread encode into, or nullptr outside one.
Batch* current_batch();

// Makes `batch` current on this thread (nullptr: none).
void set_current_batch(Batch* batch);

// The process-wide queue for ops run outside a stream.
MTL::CommandQueue* default_queue();

class MetalStream final : public Stream {
 public:
  MetalStream();
  ~MetalStream() override;
  Device device() const override { return Device{DeviceType::metal, 0}; }
  std::shared_ptr<Event> submit(CommandList list) override;
  void synchronize() override;

 private:
  // Lists encode one after another but wait for their GPU work on their own lane, so
  // list N+1 encodes while list N runs (the graph's double buffering).
  static constexpr size_t kLanes = 3;
  Retained<MTL::CommandQueue> queue_;
  std::vector<std::unique_ptr<CpuStream>> lanes_;
  std::mutex mutex_;
  size_t next_lane_ = 0;
  std::shared_future<void> encoded_;  // the previous list has been committed (or dropped)
  std::shared_ptr<Event> last_;
};

}  // namespace metalnn::metal
