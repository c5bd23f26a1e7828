#include "metalnn/core/stream.h"

#include <chrono>
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/stream.h"
#endif
#ifdef METALNN_HAS_METAL
#include "metalnn/backend/metal/context.h"
#endif

#include "metalnn/core/error.h"

namespace metalnn {

bool Event::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void Event::set_runner(std::function<void()> run) {
  std::lock_guard<std::mutex> lock(mutex_);
  runner_ = std::move(run);
}

void Event::run_if_pending() const {
  std::function<void()> run;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_ || !runner_) return;
    run.swap(runner_);
  }
  run();
}

void Event::wait() const {
  run_if_pending();
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

bool Event::wait_for(double seconds) const {
  run_if_pending();
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return done_; });
}

std::exception_ptr Event::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void Event::on_complete(Callback cb) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!done_) {
      callbacks_.push_back(std::move(cb));
      return;
    }
  }
  cb(*this);
}

void Event::complete(std::exception_ptr error) {
  // Callbacks run before waiters wake, so wait() returning means they have run.
  for (;;) {
    std::vector<Callback> callbacks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = error;
      if (callbacks_.empty()) {
        done_ = true;
        break;
      }
      callbacks.swap(callbacks_);
    }
    for (auto& cb : callbacks) {
      try {
        cb(*this);
      } catch (...) {  // a failing callback must not take the stream down
      }
    }
  }
  cv_.notify_all();
}

namespace {

// Runs a list's commands in order; the first error stops it (the rest depend on the failed one).
std::exception_ptr run_commands(std::vector<std::function<void()>>& commands) {
  for (auto& command : commands) {
    try {
      command();
    } catch (...) {
      return std::current_exception();
    }
  }
  return nullptr;
}

}  // namespace

CpuStream::CpuStream(bool waiters_run)
    : relay_(waiters_run ? std::make_shared<Relay>() : nullptr), worker_([this] { run(); }) {
  if (relay_) relay_->stream = this;
}

CpuStream::~CpuStream() {
  if (relay_) {  // waits for a waiter's run in progress; none starts after this
    std::lock_guard<std::mutex> lock(relay_->mutex);
    relay_->stream = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::shared_ptr<Event> CpuStream::submit(CommandList list) {
  auto event = std::make_shared<Event>();
  for (auto& cb : list.callbacks_) event->on_complete(std::move(cb));
  list.callbacks_.clear();
  if (relay_)
    event->set_runner([relay = std::weak_ptr<Relay>(relay_), e = event.get()] {
      if (auto r = relay.lock()) {
        std::lock_guard<std::mutex> lock(r->mutex);
        if (r->stream) r->stream->run_if_next(e);
      }
    });
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) fail(ErrorKind::Runtime, "stream", "submit on a stream that is shutting down");
    queue_.push_back(Item{std::move(list), event});
    last_ = event;
  }
  cv_.notify_all();
  return event;
}

std::shared_ptr<Event> CpuStream::run_here(CommandList list) {
  auto event = std::make_shared<Event>();
  bool queued;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queued = stop_ || inline_ || running_ || !queue_.empty();
    if (!queued) {
      inline_ = true;
      last_ = event;
    }
  }
  if (queued) return submit(std::move(list));  // behind the lists queued before it
  for (auto& cb : list.callbacks_) event->on_complete(std::move(cb));
  event->complete(run_commands(list.commands_));  // before the worker may start a list queued meanwhile
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inline_ = false;
  }
  cv_.notify_all();
  return event;
}

void CpuStream::synchronize() {
  std::shared_ptr<Event> last;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = last_;
  }
  // Lists run in order, so the last one finishing means all have.
  if (last) {
    try {
      last->wait();
    } catch (...) {  // errors belong to their own event, not to synchronize
    }
  }
}

void CpuStream::run() {
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return (stop_ && !inline_) || (!queue_.empty() && !inline_); });
      if (queue_.empty()) return;  // stop requested and drained
      item = std::move(queue_.front());
      running_ = true;
    }
    std::exception_ptr error = run_commands(item.list.commands_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.pop_front();
    }
    item.event->complete(error);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = false;  // only now may a caller run the next list: events complete in order
    }
    cv_.notify_all();
  }
}

bool CpuStream::run_if_next(const Event* event) {
  Item item;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_ || inline_ || queue_.empty() || queue_.front().event.get() != event) return false;
    item = std::move(queue_.front());
    queue_.pop_front();
    inline_ = true;  // the worker starts nothing meanwhile (lists stay in order)
  }
  item.event->complete(run_commands(item.list.commands_));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inline_ = false;
  }
  cv_.notify_all();
  return true;
}

std::unique_ptr<Stream> make_stream(Device device) {
#ifdef METALNN_HAS_CUDA
  if (device.type == DeviceType::cuda) return cuda::make_cuda_stream(device);
#endif
#ifdef METALNN_HAS_METAL
  if (device.type == DeviceType::metal) {
    if (!metal::available()) fail(ErrorKind::Value, "stream", "device metal: no Metal GPU on this machine");
    return metal::make_stream();  // one MTL::CommandBuffer per submitted list
  }
#endif
  if (device.type != DeviceType::cpu)
    fail(ErrorKind::Value, "stream", "device ", device.str(), " is not available in this build");
  return std::make_unique<CpuStream>();
}

}  // namespace metalnn
