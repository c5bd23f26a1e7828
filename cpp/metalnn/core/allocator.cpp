#include "metalnn/core/allocator.h"

#include <cstdlib>
#include <new>

#include "metalnn/core/error.h"

namespace metalnn {

Buffer::Buffer(void* data, size_t bytes, Device device, Allocator* owner)
    : data_(data), bytes_(bytes), device_(device), owner_(owner) {}

Buffer::Buffer(void* data, size_t bytes, Device device, std::function<void()> release)
    : data_(data), bytes_(bytes), device_(device), release_(std::move(release)) {}

Buffer::~Buffer() {
  if (owner_) owner_->give_back(data_, bytes_);
  else if (release_) release_();
}

size_t Allocator::bucket_size(size_t bytes) {
  if (bytes <= 256) return 256;
  // Above 256 B: round up to a quarter of the next power of two (at most 25% waste).
  size_t p = 256;
  while (p < bytes) p <<= 1;
  size_t step = p / 8;
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<Buffer> Allocator::allocate(size_t bytes) {
  size_t size = bucket_size(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.allocations++;
    auto it = free_.find(size);
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
      stats_.cache_hits++;
      stats_.bytes_cached -= size;
    }
  }
  if (!p) {
    p = raw_allocate(size);
    if (!p) {
      release_cached();  // memory is tight: drop the cache and try once more
      p = raw_allocate(size);
    }
    if (!p) fail(ErrorKind::Memory, "allocator", "out of memory allocating ", bytes, " bytes on ", device().str());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.bytes_in_use += size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  return std::make_shared<Buffer>(p, bytes, device(), this);
}

void Allocator::give_back(void* p, size_t bytes) {
  size_t size = bucket_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.bytes_in_use -= size;
  stats_.bytes_cached += size;
  free_.emplace(size, p);
}

void Allocator::release_cached() {
  std::multimap<size_t, void*> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks.swap(free_);
    stats_.bytes_cached = 0;
  }
  for (auto& kv : blocks) raw_free(kv.second);
}

AllocatorStats Allocator::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

namespace {
class CpuAllocator final : public Allocator {
 protected:
  void* raw_allocate(size_t bytes) override {
    void* p = nullptr;
    if (posix_memalign(&p, 64, bytes) != 0) return nullptr;
    return p;
  }
  void raw_free(void* p) override { std::free(p); }
  Device device() const override { return Device{DeviceType::cpu, 0}; }
};
}  // namespace

Allocator& cpu_allocator() {
  // Never destroyed: buffers may outlive static destruction order at interpreter exit.
  static Allocator* a = new CpuAllocator();
  return *a;
}

}  // namespace metalnn
