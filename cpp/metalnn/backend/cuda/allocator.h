// The CUDA allocator. Outside stream capture, blocks come from the driver's stream-ordered
// pool (cudaMallocAsync on the allocating thread's current stream, cudaFreeAsync on the
// freeing thread's): a block freed while kernels that use it are still queued is reused
// only after them. During a CUDA-graph capture the capturing thread draws from an Arena:
// plain device blocks the captured graph keeps addressing, reused only on that stream.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "metalnn/core/allocator.h"

namespace metalnn::cuda {

class Arena : public std::enable_shared_from_this<Arena> {
 public:
  ~Arena();
  std::shared_ptr<Buffer> allocate(size_t bytes);
  size_t bytes_reserved() const { return reserved_; }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::vector<void*> blocks_;
  size_t reserved_ = 0;
};

// While set (non-null), CUDA tensors this thread allocates come from `arena`.
void set_thread_arena(std::shared_ptr<Arena> arena);
std::shared_ptr<Arena> thread_arena();
// Frees, on the current stream, the pool blocks this thread let go of during a capture (call
// once the captured graph is launched, or the capture abandoned).
void release_deferred_frees();

// Page-locked host memory (cached by size bucket) for batch inputs: copies from it to the
// device are truly asynchronous. The block returns to the cache when the Buffer goes, so
// release it only once the copies reading it have run.
std::shared_ptr<Buffer> pinned_allocate(size_t bytes);

}  // namespace metalnn::cuda
