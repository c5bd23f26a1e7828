#include "metalnn/core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "metalnn/core/error.h"

namespace metalnn {
namespace {

thread_local bool t_in_parallel = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int default_threads() {
  if (const char* env = std::getenv("METALNN_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// How long an idle worker (or a waiting caller) spins before it sleeps: back-to-back
// parallel regions (one per layer at batch 1) then skip the futex wake-up. More threads than
// cores never spin: a spinning worker would take the core of one with work.
std::atomic<int> g_spin_us{0};

void set_spin_window(int threads) {
  const char* env = std::getenv("METALNN_SPIN_US");
  const int us = env ? std::max(0, std::atoi(env)) : 100;
  g_spin_us.store(threads > (int)std::max(1u, std::thread::hardware_concurrency()) ? 0 : us);
}

std::chrono::microseconds spin_window() { return std::chrono::microseconds(g_spin_us.load(std::memory_order_relaxed)); }

// Spins until pred() or the spin window has passed; true when pred() held.
template <class Pred>
bool spin_until(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + spin_window();
  for (int i = 1;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() >= until) return pred();
  }
}

// One job at a time. `ticket_` packs (generation:32 | chunks:16 | next chunk:16): a worker
// claims a chunk with one fetch_add and sees which job it belongs to, so a worker that
// woke late can never run a chunk of a job that has already finished.
class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return (int)workers_.size() + 1; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // not while a job runs
    stop();
    stopping_.store(false);
    // A worker starts from the current generation: one read inside the thread could
    // already see the next job's and then wait past it.
    const uint32_t seen = current_generation();
    set_spin_window(n);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, seen] { work(seen); });
  }

  // chunks <= 65535. team: every thread takes at most one chunk (chunks <= size()).
  void run(int chunks, const std::function<void(int)>& job, bool team) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);  // one parallel region at a time
    job_ = &job;
    team_.store(team, std::memory_order_relaxed);
    error_ = nullptr;
    pending_.store(chunks, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++generation_;
      ticket_.store((uint64_t)generation_ << 32 | (uint64_t)chunks << 16, std::memory_order_release);
      if (sleeping_ > 0) cv_.notify_all();
    }
    drain();
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      caller_sleeping_ = true;
      done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
      caller_sleeping_ = false;
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Claims and runs chunks of the current job (one at most in team mode).
  void drain() {
    t_in_parallel = true;
    for (;;) {
      const uint64_t t = ticket_.fetch_add(1, std::memory_order_acq_rel);
      const int chunks = (int)(t >> 16 & 0xffff), c = (int)(t & 0xffff);
      if (c >= chunks) break;
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (caller_sleeping_) done_cv_.notify_all();
      }
      if (team_.load(std::memory_order_relaxed)) break;
    }
    t_in_parallel = false;
  }

  uint32_t current_generation() const { return (uint32_t)(ticket_.load(std::memory_order_acquire) >> 32); }

  void work(uint32_t seen) {
    for (;;) {
      if (!spin_until([&] { return current_generation() != seen || stopping_.load(); })) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleeping_;
        cv_.wait(lock, [&] { return current_generation() != seen || stopping_.load(); });
        --sleeping_;
      }
      if (stopping_.load()) return;
      seen = current_generation();
      drain();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<bool> team_{false};  // read by a worker that may still be leaving the previous job
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> pending_{0};
  uint32_t generation_ = 0;
  int sleeping_ = 0;
  bool caller_sleeping_ = false;
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool(default_threads());  // leaked: workers may outlive statics
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  if (n < 0) fail(ErrorKind::Value, "set_num_threads", "n must be >= 0, got ", n);
  pool().resize(n == 0 ? default_threads() : n);
}

bool in_parallel_region() { return t_in_parallel; }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int threads = num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (t_in_parallel || threads == 1 || n < 2 * grain) {
    fn(0, n);
    return;
  }
  // A few chunks per thread balance uneven work without much scheduling cost.
  int64_t chunks = std::min<int64_t>(n / grain, (int64_t)threads * 4);
  chunks = std::max<int64_t>(chunks, 1);
  std::function<void(int)> job = [&](int c) {
    int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end);
  };
  pool().run((int)chunks, job, false);
}

void parallel_team(int wanted, const std::function<void(int, int)>& fn) {
  const int team = t_in_parallel ? 1 : std::max(1, std::min(wanted, num_threads()));
  if (team == 1) {
    fn(0, 1);
    return;
  }
  std::function<void(int)> job = [&](int rank) { fn(rank, team); };
  pool().run(team, job, true);
}

void SpinBarrier::wait() {
  const uint32_t phase = phase_.load(std::memory_order_acquire);
  if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
    count_.store(0, std::memory_order_relaxed);
    phase_.store(phase + 1, std::memory_order_release);
    return;
  }
  for (int i = 1; phase_.load(std::memory_order_acquire) == phase; ++i) {
    if (i < 4096) cpu_relax();
    else std::this_thread::yield();
  }
}

}  // namespace metalnn
