// Shared by the one-thread-per-element encoders: the element count as the kernels' `uint`.
#pragma once
#include <cstdint>

#include "metalnn/core/error.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

inline uint32_t element_count(const char* op, const Tensor& t) {
  if (t.numel() > (int64_t)UINT32_MAX)
    fail(ErrorKind::Value, op, "tensor of ", t.numel(), " elements exceeds the Metal kernels' 2^32 limit");
  return (uint32_t)t.numel();
}

}  // namespace metalnn::metal
