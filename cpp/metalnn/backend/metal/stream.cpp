#include "metalnn/backend/metal/stream.h"

#include <string>

#include "metalnn/backend/metal/context.h"
#include "metalnn/backend/metal/device.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {

thread_local Batch* t_batch = nullptr;

std::exception_ptr command_buffer_error(MTL::CommandBuffer* cb) {
  if (cb->status() != MTL::CommandBufferStatusError) return nullptr;
  std::string message = "command buffer failed: " + describe(cb->error());
  return std::make_exception_ptr(Error(ErrorKind::Runtime, "metal", message));
}

// Autoreleased objects (commandBuffer(), computeCommandEncoder()) are retained at once
// inside a short pool, so no pool has to span several commands of a list.
template <class Make>
auto retained_from_pool(Make make) {
  NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
  auto* object = make();
  if (object) object->retain();
  pool->release();
  return Retained<std::remove_pointer_t<decltype(object)>>(object);
}

}  // namespace

Batch::Batch(MTL::CommandQueue* queue) {
  cb_ = retained_from_pool([&] { return queue->commandBuffer(); });
  if (!cb_) fail(ErrorKind::Runtime, "metal", "could not create a command buffer");
}

Batch::~Batch() {
  if (encoder_ && !committed_) encoder_->endEncoding();
}

MTL::ComputeCommandEncoder* Batch::encoder() {
  if (committed_) fail(ErrorKind::Runtime, "metal", "encoding into a committed command buffer");
  if (!encoder_) {
    encoder_ = retained_from_pool([&] { return cb_->computeCommandEncoder(); });
    if (!encoder_) fail(ErrorKind::Runtime, "metal", "could not create a compute encoder");
  }
  return encoder_.get();
}

void Batch::commit(std::function<void(std::exception_ptr)> done) {
  if (encoder_) encoder_->endEncoding();
  committed_ = true;
  // The handler owns what the GPU uses until it has finished with it.
  auto blocks = std::make_shared<std::vector<std::shared_ptr<Buffer>>>(std::move(blocks_));
  auto buffers = std::make_shared<std::vector<Retained<MTL::Buffer>>>(std::move(buffers_));
  auto completed = std::make_shared<std::vector<std::function<void(bool)>>>(std::move(completed_));
  cb_->addCompletedHandler([blocks, buffers, completed, done](MTL::CommandBuffer* cb) {
    std::exception_ptr error = command_buffer_error(cb);
    for (auto& fn : *completed) fn(error == nullptr);
    blocks->clear();
    buffers->clear();
    done(error);
  });
  cb_->commit();
}

Batch* current_batch() { return t_batch; }

void set_current_batch(Batch* batch) { t_batch = batch; }

MTL::CommandQueue* default_queue() {
  static MTL::CommandQueue* q = require_device("metal")->newCommandQueue();
  return q;
}

void run(const char* op, const std::function<void()>& encode) {
  if (Batch* batch = current_batch()) {
    encode();  // inside a stream's list: joins its command buffer
    return;
  }
  Batch batch(default_queue());
  set_current_batch(&batch);
  try {
    encode();
  } catch (...) {
    set_current_batch(nullptr);
    throw;
  }
  set_current_batch(nullptr);
  std::promise<std::exception_ptr> finished;
  auto result = finished.get_future();
  batch.commit([&finished](std::exception_ptr e) { finished.set_value(e); });
  if (std::exception_ptr e = result.get()) {
    try {
      std::rethrow_exception(e);
    } catch (const Error& err) {
      // The op's name replaces the "[metal] " of command_buffer_error's message.
      std::string what = err.what();
      const std::string prefix = "[metal] ";
      if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
      fail(ErrorKind::Runtime, op, what);
    }
  }
}

MetalStream::MetalStream() {
  queue_ = Retained<MTL::CommandQueue>(require_device("stream")->newCommandQueue());
  if (!queue_) fail(ErrorKind::Runtime, "stream", "could not create a Metal command queue");
  for (size_t i = 0; i < kLanes; ++i) lanes_.push_back(std::make_unique<CpuStream>());
}

MetalStream::~MetalStream() {
  synchronize();
  lanes_.clear();  // joins the lanes after their last list has completed
}

namespace {
// Sets `encoded` once, whether the list committed or failed part way (commands after a
// throwing one never run, so the guard's destructor covers that path).
struct EncodedGuard {
  std::promise<void> encoded;
  bool set = false;
  void signal() {
    if (!set) encoded.set_value();
    set = true;
  }
  ~EncodedGuard() { signal(); }
};
}  // namespace

std::shared_ptr<Event> MetalStream::submit(CommandList list) {
  std::lock_guard<std::mutex> lock(mutex_);
  CpuStream& lane = *lanes_[next_lane_++ % kLanes];
  auto guard = std::make_shared<EncodedGuard>();
  std::shared_future<void> previous = encoded_;
  encoded_ = guard->encoded.get_future().share();
  auto batch = std::make_shared<std::unique_ptr<Batch>>();
  MTL::CommandQueue* queue = queue_.get();

  // Begin: wait for the previous list's commit (command buffers run in commit order).
  CommandList begin;
  begin.add([previous, batch, queue] {
    set_current_batch(nullptr);  // a list that failed part way left its batch here
    if (previous.valid()) previous.wait();
    *batch = std::make_unique<Batch>(queue);
    set_current_batch(batch->get());
  });
  lane.submit(std::move(begin));

  // End: commit, let the next list encode, then hold this lane until the GPU is done so
  // the list's Event (and its on_complete callbacks) completes with the GPU's result.
  list.add([batch, guard] {
    set_current_batch(nullptr);
    if (!*batch) fail(ErrorKind::Runtime, "stream", "no command buffer for this list");
    std::promise<std::exception_ptr> finished;
    auto result = finished.get_future();
    (*batch)->commit([&finished](std::exception_ptr e) { finished.set_value(e); });
    guard->signal();
    std::exception_ptr error = result.get();
    batch->reset();
    if (error) std::rethrow_exception(error);
  });
  auto event = lane.submit(std::move(list));
  last_ = event;
  return event;
}

void MetalStream::synchronize() {
  std::shared_ptr<Event> last;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = last_;
  }
  if (!last) return;
  try {
    last->wait();  // lists complete in order, so the last one means all
  } catch (...) {  // errors belong to their own event
  }
}

std::unique_ptr<Stream> make_stream() { return std::make_unique<MetalStream>(); }

}  // namespace metalnn::metal
