// Buffers in shared storage: CPU and GPU see the same bytes (Apple silicon's unified
// memory), so tensors need no copies. Tensors from metal::allocator() map to their
// MTL::Buffer directly; other host memory (numpy arrays, CPU tensors) is wrapped
// without a copy when page-aligned, else staged through a shared buffer.
#pragma once
#include <cstddef>
#include <memory>

#include "metalnn/backend/metal/mtl.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

class Batch;

// The MTL::Buffer behind an allocator block (its contents() pointer), or nullptr if
// the block does not come from metal::allocator().
MTL::Buffer* find_buffer(const void* block);

enum class Access { read, write, read_write };

struct Binding {
  MTL::Buffer* buffer = nullptr;
  size_t offset = 0;
};

// Where a kernel reads/writes `t`. Keeps everything it needs alive on `batch` until the
// command buffer completes; staged outputs are copied back on completion.
Binding bind(const Tensor& t, Access access, Batch& batch);

// Page size the zero-copy wrap needs for both address and length.
size_t page_size();

}  // namespace metalnn::metal
