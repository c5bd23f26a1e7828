// Softmax / log-softmax on the CPU, and the float32 row / column kernels the loss shares.
#pragma once
#include <functional>
#include <vector>

#include "kernels/softmax_params.h"
#include "metalnn/core/tensor.h"

namespace metalnn::cpu {

#include "metalnn/backend/kernels/softmax.inc"

// out = exp(in) to about 1 ulp, vectorised (in == out allowed).
void exp_n(const float* in, float* out, int64_t n);

// Float32 kernels, shared with the loss. Rows: n rows of c contiguous values, one
// softmax per row.
void softmax_rows(const float* x, float* y, int64_t n, int c, bool log);
// Columns: c rows of n positions (row strides ldx, ldy), one softmax per column;
// work holds 2 * n floats.
void softmax_cols(const float* x, int64_t ldx, float* y, int64_t ldy, int c, int n, bool log, float* work);

// A block of softmax positions of an (n, c, s) tensor: with s == 1, `count` whole rows
// starting at row `first`; otherwise positions [first, first + count) of image `image`,
// i.e. c rows of `count` values, `ld` apart.
struct SoftmaxBlock {
  int64_t image, first, count;
  bool rows() const { return image < 0; }
};

// Calls fn on blocks covering every position, in parallel (a call per block, so the
// std::function costs nothing measurable).
void for_each_softmax_block(const MnnSoftmaxParams& p, const std::function<void(const SoftmaxBlock&)>& fn);

// Float32 view of one block of a float32 or float16 tensor shaped like the input:
// float32 is used in place, float16 goes through `scratch`.
struct FloatBlock {
  float* data;
  int64_t ld;  // stride between channel rows of a column block
};
FloatBlock block_in(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, std::vector<float>& scratch);
FloatBlock block_out(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, std::vector<float>& scratch);
// Narrows a float16 block written through block_out back into t.
void block_commit(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, const FloatBlock& f);

}  // namespace metalnn::cpu
