// A tensor: a buffer, a shape and an element type. Always contiguous and row-major
// (images NCHW, matrices rows x columns); views never carry strides, so every
// kernel can assume dense data.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metalnn/core/allocator.h"
#include "metalnn/core/dtype.h"

namespace metalnn {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Buffer> buffer, Shape shape, DType dtype, size_t offset = 0);

  // A new uninitialised tensor from the device's caching allocator.
  static Tensor empty(const Shape& shape, DType dtype, Device device = {});
  static Tensor zeros(const Shape& shape, DType dtype, Device device = {});

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return (int)shape_.size(); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + ndim() : i]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return (size_t)numel() * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const;
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }

  void* raw() const { return static_cast<char*>(buffer_->data()) + offset_; }
  template <class T>
  T* data() const { return static_cast<T*>(raw()); }

  // Same storage, another shape with the same number of elements.
  Tensor reshape(const Shape& shape) const;
  // True when both tensors' bytes overlap (used to reject aliased outputs).
  bool overlaps(const Tensor& o) const;

 private:
  std::shared_ptr<Buffer> buffer_;
  Shape shape_;
  DType dtype_ = DType::float32;
  size_t offset_ = 0;
};

}  // namespace metalnn
