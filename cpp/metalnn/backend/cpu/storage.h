// Float32 / float16 storage for CPU kernels: half data is widened to float in
// blocks, computed in float, and rounded back once.
#pragma once
#include <cstdint>
#include <vector>

#include "metalnn/core/half.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

// Runs fn(in_ptrs..., out_ptr, n) over [begin, end) of same-sized tensors, handing
// the kernel float32 pointers whatever the storage type. Half inputs are widened into
// a scratch block; half outputs are narrowed after fn returns.
template <size_t NIn, class Fn>
void with_float_blocks(const Tensor* const (&ins)[NIn], const Tensor& out, int64_t begin, int64_t end,
                       Fn&& fn) {
  if (out.dtype() == DType::float32) {
    const float* in_ptrs[NIn];
    for (size_t k = 0; k < NIn; ++k) in_ptrs[k] = ins[k]->template data<float>() + begin;
    fn(in_ptrs, out.data<float>() + begin, end - begin);
    return;
  }
  constexpr int64_t kBlock = 1024;
  float scratch[NIn + 1][kBlock];
  for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
    int64_t n = std::min(kBlock, end - b0);
    const float* in_ptrs[NIn];
    for (size_t k = 0; k < NIn; ++k) {
      half_to_float_n(ins[k]->template data<uint16_t>() + b0, scratch[k], (size_t)n);
      in_ptrs[k] = scratch[k];
    }
    fn(in_ptrs, scratch[NIn], n);
    float_to_half_n(scratch[NIn], out.data<uint16_t>() + b0, (size_t)n);
  }
}

// A float32 copy of any float tensor (a view of the same memory when already float32).
std::vector<float> to_float_vector(const Tensor& t);
// Writes float values into a float32 or float16 tensor.
void store_floats(const float* src, const Tensor& dst);

}  // namespace metalnn::cpu
