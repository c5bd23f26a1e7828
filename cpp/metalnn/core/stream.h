// Streams and command lists, shaped after Metal command buffers and CUDA streams:
// record commands into a CommandList, submit it to a Stream (asynchronous, in
// order), get an Event that completes when it has run; completion callbacks fire
// on the stream's thread; an error inside a command is stored on the event and
// re-raised by wait(), the stream itself keeps working.
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "metalnn/core/device.h"

namespace metalnn {

class Event {
 public:
  using Callback = std::function<void(const Event&)>;

  bool done() const;
  // Blocks until complete; rethrows the first error raised by a command.
  void wait() const;
  // Waits at most `seconds`; true when complete (errors are left for wait()).
  bool wait_for(double seconds) const;
  std::exception_ptr error() const;
  // Runs `cb` on completion, before wait() returns (at once if already done). A callback
  // must not wait() on its own event.
  void on_complete(Callback cb);

  // Used by streams.
  void complete(std::exception_ptr error);
  // A stream whose lists may run on a waiting thread: the first wait()/wait_for() before the
  // event is done calls `run` (once), which runs the list there if it has not started.
  void set_runner(std::function<void()> run);

 private:
  void run_if_pending() const;

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  mutable std::function<void()> runner_;
  bool done_ = false;
  std::exception_ptr error_;
  std::vector<Callback> callbacks_;
};

// A recorded sequence of work: on CPU closures, on Metal one command buffer,
// on CUDA a capture of kernel launches.
class CommandList {
 public:
  void add(std::function<void()> command) { commands_.push_back(std::move(command)); }
  void on_complete(Event::Callback cb) { callbacks_.push_back(std::move(cb)); }
  size_t size() const { return commands_.size(); }

 private:
  friend class CpuStream;
  std::vector<std::function<void()>> commands_;
  std::vector<Event::Callback> callbacks_;
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual Device device() const = 0;
  // Queues the list and returns at once; lists run in submission order.
  virtual std::shared_ptr<Event> submit(CommandList list) = 0;
  // For a caller that waits for the list anyway: the CPU stream runs it on the calling thread
  // when nothing is queued (no hand-off to its worker and back); otherwise, and on devices, submit().
  virtual std::shared_ptr<Event> run_here(CommandList list) { return submit(std::move(list)); }
  // Waits for everything submitted so far.
  virtual void synchronize() = 0;
};

// The CPU stream runs command lists on a dedicated worker thread. With waiters_run, a thread
// that waits for an event whose list is next and not started runs it itself (no hand-off to
// the worker and back: the latency of encode + wait). Off for streams whose worker thread
// matters (the CUDA and Metal streams keep per-thread device state on theirs).
class CpuStream final : public Stream {
 public:
  explicit CpuStream(bool waiters_run = false);
  ~CpuStream() override;
  Device device() const override { return Device{DeviceType::cpu, 0}; }
  std::shared_ptr<Event> submit(CommandList list) override;
  std::shared_ptr<Event> run_here(CommandList list) override;
  void synchronize() override;

 private:
  void run();
  bool run_if_next(const Event* event);  // a waiter's run: true if it ran event's list
  struct Item {
    CommandList list;
    std::shared_ptr<Event> event;
  };
  // What an event's runner reaches the stream through; `stream` is cleared (under `mutex`,
  // which a waiter's run holds) before the stream goes away.
  struct Relay {
    std::mutex mutex;
    CpuStream* stream;
  };
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::shared_ptr<Event> last_;
  bool stop_ = false;
  bool inline_ = false;  // a list runs on a caller's thread: the worker starts nothing meanwhile
  bool running_ = false;  // the worker runs the list at the queue's front
  std::shared_ptr<Relay> relay_;  // with waiters_run only
  std::thread worker_;
};

std::unique_ptr<Stream> make_stream(Device device);

}  // namespace metalnn
