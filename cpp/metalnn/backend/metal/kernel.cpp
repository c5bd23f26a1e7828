#include "metalnn/backend/metal/kernel.h"

#include "metalnn/backend/metal/device.h"
#include "metalnn/backend/metal/stream.h"
#include "metalnn/core/error.h"

namespace metalnn::metal {

namespace {
Batch& require_batch(const char* op) {
  Batch* b = current_batch();
  if (!b) fail(ErrorKind::Runtime, op, "Metal kernel encoded outside metal::run() or a Metal stream");
  return *b;
}
}  // namespace

std::string kernel_name(const std::string& stem, DType dtype) {
  return stem + "_" + dtype_name(dtype);
}

KernelCall::KernelCall(const char* op, const std::string& kernel)
    : op_(op), pipeline_(metal::pipeline(kernel, op)), batch_(require_batch(op)), encoder_(batch_.encoder()) {
  encoder_->setComputePipelineState(pipeline_.state);
}

KernelCall& KernelCall::buffer(int index, const Tensor& t, Access access) {
  Binding b = bind(t, access, batch_);
  encoder_->setBuffer(b.buffer, b.offset, index);
  return *this;
}

KernelCall& KernelCall::bytes(int index, const void* data, size_t size) {
  if (size > 4096) fail(ErrorKind::Runtime, op_, "setBytes of ", size, " bytes exceeds Metal's 4 KiB");
  encoder_->setBytes(data, size, index);
  return *this;
}

KernelCall& KernelCall::threadgroup_memory(int index, size_t size) {
  size_t limit = device_info().max_threadgroup_memory;
  if (size + pipeline_.static_threadgroup_memory > limit)
    fail(ErrorKind::Runtime, op_, "threadgroup memory ", size, " B exceeds the device's ", limit, " B");
  encoder_->setThreadgroupMemoryLength((size + 15) / 16 * 16, index);  // Metal wants multiples of 16
  return *this;
}

void KernelCall::threads(size_t count, size_t cap) {
  if (count == 0) return;  // nothing to do; Metal rejects empty grids
  size_t width = threadgroup_width(pipeline_, count, cap);
  size_t groups = (count + width - 1) / width;
  encoder_->dispatchThreadgroups(MTL::Size(groups, 1, 1), MTL::Size(width, 1, 1));
}

void KernelCall::groups(size_t gx, size_t gy, size_t gz, size_t tx, size_t ty, size_t tz) {
  if (gx == 0 || gy == 0 || gz == 0) return;
  if (tx * ty * tz > pipeline_.max_threads)
    fail(ErrorKind::Runtime, op_, "threadgroup of ", tx * ty * tz, " threads exceeds the pipeline's ",
         pipeline_.max_threads);
  encoder_->dispatchThreadgroups(MTL::Size(gx, gy, gz), MTL::Size(tx, ty, tz));
}

}  // namespace metalnn::metal
