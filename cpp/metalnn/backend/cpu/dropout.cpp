#include "metalnn/backend/cpu/dropout.h"

#include <algorithm>

#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;
constexpr int64_t kBlock = 1024;

// out = in * mask * scale over n elements (float32).
inline void apply_mask(const float* __restrict in, const uint8_t* __restrict mask, float* __restrict out, int64_t n,
                       float scale) {
  // A multiply (not a select), so a NaN or Inf input gives NaN even where dropped, as x * mask / keep.
  for (int64_t i = 0; i < n; ++i) out[i] = in[i] * (mask[i] ? scale : 0.f);
}

// Runs apply_mask over [begin, end) of float32 or float16 tensors.
void apply_range(const Tensor& in, const uint8_t* mask, const Tensor& out, int64_t begin, int64_t end, float scale) {
  if (in.dtype() == DType::float32) {
    apply_mask(in.data<float>() + begin, mask + begin, out.data<float>() + begin, end - begin, scale);
    return;
  }
  float a[kBlock], b[kBlock];
  for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
    size_t n = (size_t)std::min(kBlock, end - b0);
    half_to_float_n(in.data<uint16_t>() + b0, a, n);
    apply_mask(a, mask + b0, b, (int64_t)n, scale);
    float_to_half_n(b, out.data<uint16_t>() + b0, n);
  }
}

}  // namespace

void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, const MnnDropoutParams& p) {
  const uint64_t key = mnn_dropout_key(p.seed);
  uint8_t* m = mask.data<uint8_t>();
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) m[i] = (uint8_t)mnn_dropout_keep(key, (uint64_t)i, p.threshold);
    apply_range(x, m, y, b, e, p.scale);
  });
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, const MnnDropoutParams& p) {
  const uint8_t* m = mask.data<uint8_t>();
  parallel_for(dy.numel(), kGrain, [&](int64_t b, int64_t e) { apply_range(dy, m, dx, b, e, p.scale); });
}

}  // namespace metalnn::cpu
