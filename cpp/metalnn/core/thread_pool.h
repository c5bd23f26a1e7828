// One process-wide pool of worker threads for CPU kernels. BLAS runs single-threaded
// inside it, so the two never oversubscribe the cores.
#pragma once
#include <cstdint>
#include <functional>

namespace metalnn {

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel when n is at
// least `grain` per thread. Calls made from inside a worker run serially.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

int num_threads();
// Sets the number of threads (>= 1); 0 restores the default (hardware concurrency,
// or METALNN_NUM_THREADS).
void set_num_threads(int n);
bool in_parallel_region();

}  // namespace metalnn
