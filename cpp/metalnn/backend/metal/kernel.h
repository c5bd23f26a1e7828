// Encoding one kernel dispatch into the current batch:
//   KernelCall k(op, "neuron_forward_float32");
//   k.buffer(0, x, Access::read).buffer(1, y, Access::write).bytes(2, params).threads(n);
// Indices are the [[buffer(n)]] contract documented at the top of each .metal file.
#pragma once
#include <cstddef>
#include <string>

#include "metalnn/backend/metal/buffers.h"
#include "metalnn/backend/metal/pipelines.h"
#include "metalnn/core/dtype.h"
#include "metalnn/core/tensor.h"

namespace metalnn::metal {

class Batch;

// "<op>_<direction>_<dtype>", the kernel naming rule.
std::string kernel_name(const std::string& stem, DType dtype);

class KernelCall {
 public:
  // Needs a current batch: call inside metal::run() or a Metal stream's list.
  KernelCall(const char* op, const std::string& kernel);

  KernelCall& buffer(int index, const Tensor& t, Access access);
  // Small constant data (params structs) copied into the command buffer; Metal limits it to 4 KiB.
  KernelCall& bytes(int index, const void* data, size_t size);
  template <class T>
  KernelCall& bytes(int index, const T& value) { return bytes(index, &value, sizeof(T)); }
  KernelCall& threadgroup_memory(int index, size_t size);

  // 1-D grid of `count` threads, rounded up to whole threadgroups (kernels bounds-check).
  void threads(size_t count, size_t cap = 0);
  // Explicit grid of threadgroups for tiled kernels; the group size must fit the pipeline.
  void groups(size_t gx, size_t gy, size_t gz, size_t tx, size_t ty = 1, size_t tz = 1);

  const Pipeline& pipeline() const { return pipeline_; }

 private:
  const char* op_;
  const Pipeline& pipeline_;
  Batch& batch_;
  MTL::ComputeCommandEncoder* encoder_;
};

}  // namespace metalnn::metal
