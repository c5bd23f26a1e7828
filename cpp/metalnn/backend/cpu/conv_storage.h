// float32 views of float32 / float16 tensors for the GEMM-based conv and linear
// kernels: float16 is widened once (whole tensor or per image) and rounded back once.
#pragma once
#include <cstdint>
#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// The whole tensor as float32: its own memory, or a widened copy for float16.
// Null for an undefined tensor.
class FloatView {
 public:
  explicit FloatView(const Tensor& t) {
    if (!t.defined()) return;
    if (t.dtype() == DType::float32) {
      ptr_ = t.data<float>();
    } else {
      copy_ = to_float_vector(t);
      ptr_ = copy_.data();
    }
  }
  FloatView(const FloatView&) = delete;
  FloatView& operator=(const FloatView&) = delete;
  const float* get() const { return ptr_; }

 private:
  const float* ptr_ = nullptr;
  std::vector<float> copy_;
};

// Elements [n*size, (n+1)*size) of t as float32: a pointer into t, or widened into scratch.
inline const float* block_in(const Tensor& t, int64_t n, int64_t size, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + n * size;
  if ((int64_t)scratch.size() < size) scratch.resize((size_t)size);
  half_to_float_n(t.data<uint16_t>() + n * size, scratch.data(), (size_t)size);
  return scratch.data();
}

// Where to compute block n of t in float32: t itself, or scratch (then block_out rounds it back).
inline float* block_buffer(const Tensor& t, int64_t n, int64_t size, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + n * size;
  if ((int64_t)scratch.size() < size) scratch.resize((size_t)size);
  return scratch.data();
}

inline void block_out(const Tensor& t, int64_t n, int64_t size, const float* buf) {
  if (t.dtype() == DType::float16) float_to_half_n(buf, t.data<uint16_t>() + n * size, (size_t)size);
}

// A whole output tensor in float32: the tensor itself, or a buffer that finish() rounds back.
class FloatOut {
 public:
  explicit FloatOut(const Tensor& out) : t_(out) { ptr_ = block_buffer(t_, 0, t_.numel(), buf_); }
  FloatOut(const FloatOut&) = delete;
  FloatOut& operator=(const FloatOut&) = delete;
  float* get() const { return ptr_; }
  void finish() const { block_out(t_, 0, t_.numel(), ptr_); }

 private:
  const Tensor& t_;
  std::vector<float> buf_;
  float* ptr_;
};

}  // namespace metalnn::cpu
