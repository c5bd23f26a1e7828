#include "metalnn/backend/cuda/allocator.h"

#include <cstdint>

#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/device.h"

namespace metalnn::cuda {
namespace {

thread_local std::shared_ptr<Arena> t_arena;
// Pool blocks let go of while this thread's stream is being captured: a free recorded into
// the graph would free them at every replay, so they wait until the graph is launched.
thread_local std::vector<void*> t_deferred;

class CudaAllocator final : public Allocator {
 public:
  std::shared_ptr<Buffer> allocate(size_t bytes) override {
    if (t_arena) return t_arena->allocate(bytes);
    static bool pool_ready = [] {
      // Keep freed memory in the pool (no trimming at each synchronisation point).
      cudaMemPool_t pool;
      if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
      }
      cudaGetLastError();
      return true;
    }();
    (void)pool_ready;
    size_t size = bytes ? bucket_size(bytes) : 256;
    void* p = nullptr;
    cudaStream_t s = current_stream();
    if (cudaMallocAsync(&p, size, s) != cudaSuccess) {
      cudaGetLastError();
      // Memory is tight: wait for pending frees, give the pool's spare memory back, retry once.
      cudaDeviceSynchronize();
      cudaMemPool_t pool;
      if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
      cudaGetLastError();
      if (cudaMallocAsync(&p, size, s) != cudaSuccess) {
        cudaGetLastError();
        fail(ErrorKind::Memory, "allocator", "out of memory allocating ", bytes, " bytes on cuda:0");
      }
    }
    // Freed on the stream current where the last owner lets go (stream-ordered): the
    // executor's worker drops scratch on its own stream, after the kernels reading it.
    return std::make_shared<Buffer>(p, bytes, Device{DeviceType::cuda, 0}, [p] {
      cudaStream_t fs = current_stream();
      if (capturing(fs)) {
        t_deferred.push_back(p);
        return;
      }
      if (cudaFreeAsync(p, fs) != cudaSuccess) cudaGetLastError();  // at exit the context may be gone
    });
  }

 protected:
  // Unused: allocate() above bypasses the base class cache.
  void* raw_allocate(size_t) override { return nullptr; }
  void raw_free(void*) override {}
  Device device() const override { return Device{DeviceType::cuda, 0}; }
};

}  // namespace

Arena::~Arena() {
  for (void* p : blocks_) cudaFree(p);  // cudaFree waits for the kernels still using them
  cudaGetLastError();
}

std::shared_ptr<Buffer> Arena::allocate(size_t bytes) {
  size_t size = bytes ? Allocator::bucket_size(bytes) : 256;
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
    }
  }
  if (!p) {
    // cudaMalloc is allowed inside a relaxed-mode capture (it is not a stream operation).
    if (cudaMalloc(&p, size) != cudaSuccess) {
      cudaGetLastError();
      fail(ErrorKind::Memory, "allocator", "out of memory allocating ", bytes, " bytes on cuda:0 (graph arena)");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.push_back(p);
    reserved_ += size;
  }
  // Returned blocks are reused by later allocations of the same (capturing) stream only,
  // so stream order keeps them safe.
  std::shared_ptr<Arena> self = shared_from_this();
  return std::make_shared<Buffer>(p, bytes, Device{DeviceType::cuda, 0}, [self, p, size] {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->free_.emplace(size, p);
  });
}

void set_thread_arena(std::shared_ptr<Arena> arena) { t_arena = std::move(arena); }

void release_deferred_frees() {
  cudaStream_t s = current_stream();
  for (void* p : t_deferred)
    if (cudaFreeAsync(p, s) != cudaSuccess) cudaGetLastError();
  t_deferred.clear();
}
std::shared_ptr<Arena> thread_arena() { return t_arena; }

std::shared_ptr<Buffer> pinned_allocate(size_t bytes) {
  // Leaked on purpose, like the device allocator: buffers may outlive static destruction.
  static auto* mutex = new std::mutex();
  static auto* cache = new std::multimap<size_t, void*>();
  size_t size = bytes ? Allocator::bucket_size(bytes) : 256;
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(*mutex);
    auto it = cache->find(size);
    if (it != cache->end()) {
      p = it->second;
      cache->erase(it);
    }
  }
  if (!p && cudaHostAlloc(&p, size, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorKind::Memory, "allocator", "out of page-locked host memory allocating ", bytes, " bytes");
  }
  return std::make_shared<Buffer>(p, bytes, Device{DeviceType::cpu, 0}, [p, size] {
    std::lock_guard<std::mutex> lock(*mutex);
    cache->emplace(size, p);
  });
}

Allocator& allocator() {
  // Leaked on purpose: buffers may outlive static destruction at interpreter exit.
  static auto* a = new CudaAllocator();
  return *a;
}

}  // namespace metalnn::cuda
