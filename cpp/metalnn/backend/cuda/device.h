// CUDA device, allocator and copies. Plain C++ (no CUDA headers), so ops/, core/ and the
// bindings can include it; kernels live in <family>.cu next to this file.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "metalnn/core/allocator.h"

namespace metalnn::cuda {

int device_count();
// True when the driver and at least one GPU are present (never throws).
bool available();
// Stream-ordered allocator for device 0 (allocator.h).
Allocator& allocator();

// Copies run on the current stream: to_device returns once `src` may be reused (the copy
// itself is queued), to_host waits for it (and for the kernels before).
void copy_to_device(void* dst, const void* src, size_t bytes, const char* op);
void copy_to_host(void* dst, const void* src, size_t bytes, const char* op);
void fill_zero(void* dst, size_t bytes, const char* op);
// Waits for the current stream and raises a RuntimeError naming `op` on a device error.
void synchronize(const char* op);

// What the graph executor allows this thread's ops to do on the host while it records a
// program (set for the duration of one batch, thread-local; null: no restriction).
// `inputs` are the batch's input buffers, written before the batch was queued: an op may
// read them on the host even inside a capture (the softmax cross-entropy checks its labels
// that way). While `probing` (an eager batch), host reads of anything else, waits and large
// host-to-device copies are counted in `blocked`: such a program is never captured.
struct HostAccess {
  std::vector<std::pair<const void*, size_t>> inputs;
  bool probing = false;
  bool blocked = false;
  std::string what;  // the first blocked operation
};
void set_host_access(HostAccess* access);

}  // namespace metalnn::cuda
