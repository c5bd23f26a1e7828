// The Metal device: the system default MTL::Device, opened once, and what it can do.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "metalnn/backend/metal/mtl.h"

namespace metalnn::metal {

struct DeviceInfo {
  std::string name;
  bool unified_memory = false;
  uint64_t max_buffer_length = 0;           // bytes in one MTL::Buffer
  uint64_t recommended_working_set = 0;     // bytes the GPU should keep resident
  size_t max_threads_per_threadgroup = 0;   // device limit; a pipeline's own limit may be lower
  size_t max_threadgroup_memory = 0;        // bytes of threadgroup memory
  bool apple7 = false;                      // simdgroup matrices, M1 and later
  bool metal3 = false;
};

// The default device, or nullptr when this machine has none (a Mac VM, a headless CI box).
MTL::Device* device();
// device(), or a RuntimeError naming `op` when there is none.
MTL::Device* require_device(const char* op);
const DeviceInfo& device_info();

}  // namespace metalnn::metal
