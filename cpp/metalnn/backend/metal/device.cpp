// metal-cpp is header-only; exactly one translation unit emits its selector and
// class tables. This is it.
#define NS_PRIVATE_IMPLEMENTATION
#define MTL_PRIVATE_IMPLEMENTATION
#include "metalnn/backend/metal/device.h"

#include <mutex>

#include "metalnn/backend/metal/context.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

MTL::Device* device() {
  // Opened once and kept for the life of the process (never released at exit: buffers may outlive statics).
  static MTL::Device* d = [] {
    NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
    MTL::Device* dev = MTL::CreateSystemDefaultDevice();
    pool->release();
    return dev;
  }();
  return d;
}

MTL::Device* require_device(const char* op) {
  MTL::Device* d = device();
  if (!d) fail(ErrorKind::Runtime, op, "no Metal device on this machine");
  return d;
}

const DeviceInfo& device_info() {
  static const DeviceInfo info = [] {
    DeviceInfo i;
    MTL::Device* d = device();
    if (!d) return i;
    NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
    if (d->name() && d->name()->utf8String()) i.name = d->name()->utf8String();
    i.unified_memory = d->hasUnifiedMemory();
    i.max_buffer_length = d->maxBufferLength();
    i.recommended_working_set = d->recommendedMaxWorkingSetSize();
    MTL::Size tg = d->maxThreadsPerThreadgroup();
    i.max_threads_per_threadgroup = tg.width;  // the x limit; the total per pipeline is asked of the pipeline
    i.max_threadgroup_memory = d->maxThreadgroupMemoryLength();
    i.apple7 = d->supportsFamily(MTL::GPUFamilyApple7);
    i.metal3 = d->supportsFamily(MTL::GPUFamilyMetal3);
    pool->release();
    return i;
  }();
  return info;
}

bool available() { return device() != nullptr; }

}  // namespace metalnn::metal
