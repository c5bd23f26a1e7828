#include "metalnn/core/tensor.h"

#include <cstring>

#include "metalnn/core/error.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/device.h"
#endif
#ifdef METALNN_HAS_METAL
#include "metalnn/backend/metal/context.h"
#endif

namespace metalnn {

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";
  return out + ")";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

Tensor::Tensor(std::shared_ptr<Buffer> buffer, Shape shape, DType dtype, size_t offset)
    : buffer_(std::move(buffer)), shape_(std::move(shape)), dtype_(dtype), offset_(offset) {}

Device Tensor::device() const { return buffer_ ? buffer_->device() : Device{}; }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape)
    if (d < 0) fail(ErrorKind::Value, "tensor", "negative dimension in shape ", shape_str(shape));
  size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
#ifdef METALNN_HAS_CUDA
  if (device.type == DeviceType::cuda) return Tensor(cuda::allocator().allocate(bytes), shape, dtype);
#endif
#ifdef METALNN_HAS_METAL
  // Shared storage: the CPU sees the same bytes, so zeros() and host copies use memset/memcpy.
  if (device.type == DeviceType::metal) {
    if (!metal::available()) fail(ErrorKind::Value, "tensor", "device metal: no Metal GPU on this machine");
    return Tensor(metal::allocator().allocate(bytes), shape, dtype);
  }
#endif
  if (device.type != DeviceType::cpu)
    fail(ErrorKind::Value, "tensor", "device ", device.str(), " is not available in this build");
  return Tensor(cpu_allocator().allocate(bytes), shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
#ifdef METALNN_HAS_CUDA
  if (device.type == DeviceType::cuda) {
    cuda::fill_zero(t.raw(), t.nbytes(), "tensor");
    return t;
  }
#endif
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape_numel(shape) != numel())
    fail(ErrorKind::Value, "reshape", "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  return Tensor(buffer_, shape, dtype_, offset_);
}

bool Tensor::overlaps(const Tensor& o) const {
  if (!defined() || !o.defined() || nbytes() == 0 || o.nbytes() == 0) return false;
  auto a = (uintptr_t)raw(), b = (uintptr_t)o.raw();
  return a < b + o.nbytes() && b < a + nbytes();
}

}  // namespace metalnn
