// Range checks shared by the encoders: the kernels index with 32-bit `uint`.
#pragma once
#include <cstdint>

#include "metalnn/core/error.h"

namespace metalnn::metal {

// The kernels index with `uint`: every extent must fit.
inline uint32_t checked_u32(const char* op, const char* what, int64_t value) {
  if (value < 0 || value > (int64_t)UINT32_MAX) fail(ErrorKind::Value, op, what, " = ", value, " exceeds 2^32");
  return (uint32_t)value;
}

}  // namespace metalnn::metal
