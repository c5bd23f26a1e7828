// One process-wide pool of worker threads for CPU kernels. BLAS runs single-threaded
// inside it, so the two never oversubscribe the cores.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

namespace metalnn {

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel when n is at
// least `grain` per thread. Calls made from inside a worker run serially.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Runs fn(rank, team) once on each of `team` distinct threads at the same time (team =
// min(wanted, num_threads()); 1 inside a parallel region), so members may wait for each
// other (SpinBarrier). For sequential loops whose steps are too short for one wake-up each.
void parallel_team(int wanted, const std::function<void(int, int)>& fn);

int num_threads();
// Sets the number of threads (>= 1); 0 restores the default (hardware concurrency,
// or METALNN_NUM_THREADS).
void set_num_threads(int n);
bool in_parallel_region();

// A reusable barrier for the members of one parallel_team: spins briefly, then yields
// (the machine may be shared, and a spinning member must not starve the one it waits for).
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void wait();

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<uint32_t> phase_{0};
};

}  // namespace metalnn
