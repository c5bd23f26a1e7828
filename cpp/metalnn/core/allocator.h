// Buffers and the caching allocator. Freed blocks are kept in size buckets and
// reused, so a steady-state training step does not call the system allocator.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "metalnn/core/device.h"

namespace metalnn {

class Allocator;

// A block of device memory. Owned either by an allocator (returned to its cache on
// destruction) or by an external owner such as a numpy array (released by `release`).
class Buffer {
 public:
  Buffer(void* data, size_t bytes, Device device, Allocator* owner);
  Buffer(void* data, size_t bytes, Device device, std::function<void()> release);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  Device device_;
  Allocator* owner_ = nullptr;
  std::function<void()> release_;
};

struct AllocatorStats {
  size_t bytes_in_use = 0;     // handed out and not yet returned
  size_t bytes_cached = 0;     // returned and kept for reuse
  size_t peak_bytes_in_use = 0;
  uint64_t allocations = 0;    // requests served
  uint64_t cache_hits = 0;     // requests served from the cache
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Virtual so a device can order frees on its queues (CUDA: stream-ordered pools).
  virtual std::shared_ptr<Buffer> allocate(size_t bytes);
  void release_cached();  // give cached blocks back to the system
  AllocatorStats stats();

  // Bucketed size a request is rounded up to (so similar sizes share blocks).
  static size_t bucket_size(size_t bytes);

 protected:
  virtual void* raw_allocate(size_t bytes) = 0;
  virtual void raw_free(void* p) = 0;
  virtual Device device() const = 0;

 private:
  friend class Buffer;
  void give_back(void* p, size_t bytes);

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  AllocatorStats stats_;
};

// The host allocator: 64-byte aligned blocks for vector loads.
Allocator& cpu_allocator();

}  // namespace metalnn
