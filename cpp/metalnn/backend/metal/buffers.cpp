#include "metalnn/backend/metal/buffers.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "metalnn/backend/metal/context.h"
#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/stream.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {

// Blocks are MTL::Buffers in shared storage; the core Buffer carries contents(), and
// this table maps it back to the MTL::Buffer for binding.
class MetalAllocator final : public Allocator {
 public:
  MTL::Buffer* find(const void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find(p);
    return it == blocks_.end() ? nullptr : it->second;
  }

 protected:
  void* raw_allocate(size_t bytes) override {
    MTL::Device* d = metal::device();  // the free function, not Allocator::device()
    if (!d || bytes > d->maxBufferLength()) return nullptr;
    MTL::Buffer* b = d->newBuffer(bytes, MTL::ResourceStorageModeShared | MTL::ResourceHazardTrackingModeTracked);
    if (!b) return nullptr;
    void* p = b->contents();
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_[p] = b;
    return p;
  }
  void raw_free(void* p) override {
    MTL::Buffer* b = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = blocks_.find(p);
      if (it == blocks_.end()) return;
      b = it->second;
      blocks_.erase(it);
    }
    b->release();
  }
  Device device() const override { return Device{DeviceType::metal, 0}; }

 private:
  std::mutex mutex_;
  std::unordered_map<const void*, MTL::Buffer*> blocks_;
};

MetalAllocator& metal_allocator() {
  // Never destroyed: tensors may outlive static destruction at interpreter exit.
  static MetalAllocator* a = new MetalAllocator();
  return *a;
}

}  // namespace

Allocator& allocator() { return metal_allocator(); }

MTL::Buffer* find_buffer(const void* block) { return metal_allocator().find(block); }

size_t page_size() {
  static const size_t size = (size_t)sysconf(_SC_PAGESIZE);
  return size;
}

Binding bind(const Tensor& t, Access access, Batch& batch) {
  const char* op = "metal";
  if (!t.defined()) fail(ErrorKind::Value, op, "cannot bind an undefined tensor");
  const auto& block = t.buffer();
  const size_t offset = static_cast<const char*>(t.raw()) - static_cast<const char*>(block->data());
  batch.keep(block);  // the block must not return to a cache while the GPU uses it

  if (MTL::Buffer* b = find_buffer(block->data())) return Binding{b, offset};

  MTL::Device* d = require_device(op);
  const size_t page = page_size();
  const auto base = reinterpret_cast<uintptr_t>(block->data());
  if (base % page == 0 && block->bytes() % page == 0 && block->bytes() > 0) {
    // Zero copy: the GPU reads and writes the host pages in place; the block owns them.
    MTL::Buffer* wrap = d->newBuffer(block->data(), block->bytes(), MTL::ResourceStorageModeShared, nullptr);
    if (wrap) {
      batch.keep(Retained<MTL::Buffer>(wrap));
      return Binding{wrap, offset};
    }
  }
  // Staged: copy in now, copy out when the command buffer has completed.
  const size_t bytes = std::max<size_t>(t.nbytes(), 1);
  MTL::Buffer* stage = d->newBuffer(bytes, MTL::ResourceStorageModeShared);
  if (!stage) fail(ErrorKind::Memory, op, "out of memory staging ", bytes, " bytes");
  Retained<MTL::Buffer> owned(stage);
  if (access != Access::write) std::memcpy(stage->contents(), t.raw(), t.nbytes());
  if (access != Access::read) {
    void* dst = t.raw();
    size_t n = t.nbytes();
    batch.on_completed([owned, dst, n](bool ok) {
      if (ok) std::memcpy(dst, owned->contents(), n);
    });
  }
  batch.keep(owned);
  return Binding{stage, 0};
}

}  // namespace metalnn::metal
