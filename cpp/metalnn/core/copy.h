// Copies between host memory and tensors on any device. CPU and Metal (shared storage)
// tensors are host-visible; CUDA tensors copy over the bus on the current stream.
#pragma once
#include <cstddef>

#include "metalnn/core/tensor.h"

namespace metalnn {

// dst's bytes from host memory `src` (dst.nbytes() bytes).
void copy_from_host(const Tensor& dst, const void* src, const char* op);
// A host (CPU) tensor with t's contents: t itself when it already is host-visible.
Tensor to_host(const Tensor& t, const char* op);
// A copy of host tensor `t` on `device`.
Tensor to_device(const Tensor& t, Device device, const char* op);

}  // namespace metalnn
