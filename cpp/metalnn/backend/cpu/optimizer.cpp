#include "metalnn/backend/cpu/optimizer.h"

#include <algorithm>
#include <cmath>
#if defined(__SSE2__) || defined(__AVX__)
#include <immintrin.h>
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;
constexpr int64_t kHalfBlock = 1024;

// Block kernels: float32 weights (float16 is widened into a scratch block first) and
// float32 state, all offset to the block start. Branches on params are unswitched by
// the compiler; the options that change the loop's shape are template arguments.
template <bool HasBuffer, bool Nesterov>
void sgd_block(float* __restrict w, const float* __restrict g, float* const* st, int64_t n, const MnnSgdParams& sp) {
  const MnnOptimizerParams p = sp.common;
  const float lr = p.learning_rate, mom = sp.momentum;
  float* __restrict v = st[0];
  for (int64_t i = 0; i < n; ++i) {
    float gi = mnn_optimizer_gradient(p, g[i], w[i]);
    float vn = HasBuffer ? mom * v[i] - lr * gi : -lr * gi;
    if (HasBuffer) v[i] = vn;
    w[i] += Nesterov ? mom * vn - lr * gi : vn;
  }
}

// Square roots of a small block in place. Spelled with intrinsics because the build keeps
// math-errno on, which stops the compiler from vectorising std::sqrt.
void sqrt_block(float* x, int64_t n) {
  int64_t i = 0;
  // (No AVX-512 path: gcc 12 warns inside _mm512_sqrt_ps, and the loop is memory bound.)
#if defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#elif defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#elif defined(__ARM_NEON) && defined(__aarch64__)
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vsqrtq_f32(vld1q_f32(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// Adam and RMSProp run in three vectorised passes over sub-blocks that stay in L1:
// state update (denominator to a scratch row), square roots, weight update.
constexpr int64_t kSub = 256;

template <bool AmsGrad>
void adam_block(float* __restrict w, const float* __restrict g, float* const* st, int64_t n,
                const MnnAdamParams& ap) {
  const MnnOptimizerParams p = ap.common;
  const float b1 = ap.beta1, b2 = ap.beta2, c1 = ap.one_minus_beta1, c2 = ap.one_minus_beta2;
  const float lr_t = ap.lr_t, eps = ap.epsilon;
  float den[kSub];
  for (int64_t c = 0; c < n; c += kSub) {
    const int64_t k = std::min(kSub, n - c);
    float* __restrict wc = w + c;
    const float* __restrict gc = g + c;
    float* __restrict m = st[0] + c;
    float* __restrict v = st[1] + c;
    float* __restrict vmax = AmsGrad ? st[2] + c : nullptr;
    for (int64_t i = 0; i < k; ++i) {
      float gi = mnn_optimizer_gradient(p, gc[i], wc[i]);
      float vi = b2 * v[i] + c2 * (gi * gi);
      m[i] = b1 * m[i] + c1 * gi;
      v[i] = vi;
      if (AmsGrad) {
        vi = vmax[i] >= vi ? vmax[i] : vi;  // a NaN v reaches v_max too
        vmax[i] = vi;
      }
      den[i] = vi;
    }
    sqrt_block(den, k);
    for (int64_t i = 0; i < k; ++i) wc[i] -= lr_t * m[i] / (den[i] + eps);
  }
}

void rmsprop_block(float* __restrict w, const float* __restrict g, float* const* st, int64_t n,
                   const MnnRmsPropParams& rp) {
  const MnnOptimizerParams p = rp.common;
  const float d = rp.decay, c1 = rp.one_minus_decay, lr = p.learning_rate, eps = rp.epsilon;
  float den[kSub], gp[kSub];
  for (int64_t c = 0; c < n; c += kSub) {
    const int64_t k = std::min(kSub, n - c);
    float* __restrict wc = w + c;
    const float* __restrict gc = g + c;
    float* __restrict s = st[0] + c;
    for (int64_t i = 0; i < k; ++i) {
      float gi = mnn_optimizer_gradient(p, gc[i], wc[i]);
      float si = d * s[i] + c1 * (gi * gi);
      s[i] = si;
      gp[i] = gi;
      den[i] = si;
    }
    sqrt_block(den, k);
    for (int64_t i = 0; i < k; ++i) wc[i] -= lr * gp[i] / (den[i] + eps);
  }
}

// Runs block(w, g, state, n) over elements [lo, hi) of one slot.
template <class Block>
void run_range(const OptimizerSlot& slot, int64_t lo, int64_t hi, Block& block) {
  float* st[3];
  for (int k = 0; k < 3; ++k) st[k] = slot.state[k] ? slot.state[k] + lo : nullptr;
  if (slot.weights->dtype() == DType::float32) {
    block(slot.weights->data<float>() + lo, slot.gradients->data<float>() + lo, st, hi - lo);
    return;
  }
  // float16: widen, update in float32, round the weights once.
  float wf[kHalfBlock], gf[kHalfBlock];
  uint16_t* wh = slot.weights->data<uint16_t>();
  const uint16_t* gh = slot.gradients->data<uint16_t>();
  for (int64_t b = lo; b < hi; b += kHalfBlock) {
    size_t n = (size_t)std::min(kHalfBlock, hi - b);
    half_to_float_n(wh + b, wf, n);
    half_to_float_n(gh + b, gf, n);
    float* sb[3];
    for (int k = 0; k < 3; ++k) sb[k] = slot.state[k] ? slot.state[k] + b : nullptr;
    block(wf, gf, sb, (int64_t)n);
    float_to_half_n(wf, wh + b, n);
  }
}

// Splits the concatenation of all slots into parallel chunks, so many small tensors
// share threads and one large tensor is split.
template <class Block>
void run_slots(const std::vector<OptimizerSlot>& slots, Block block) {
  std::vector<int64_t> start(slots.size() + 1, 0);
  for (size_t k = 0; k < slots.size(); ++k) start[k + 1] = start[k] + slots[k].weights->numel();
  parallel_for(start.back(), kGrain, [&](int64_t b, int64_t e) {
    size_t k = (size_t)(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
    for (; k < slots.size() && start[k] < e; ++k) {
      int64_t lo = std::max(b, start[k]) - start[k], hi = std::min(e, start[k + 1]) - start[k];
      if (lo < hi) run_range(slots[k], lo, hi, block);
    }
  });
}

}  // namespace

void sgd_step(const std::vector<OptimizerSlot>& slots, const MnnSgdParams& p) {
  bool buf = p.has_momentum_buffer != 0, nest = p.nesterov != 0;
  auto go = [&](auto kernel) {
    run_slots(slots, [&](float* w, const float* g, float* const* st, int64_t n) { kernel(w, g, st, n, p); });
  };
  if (buf && nest) go(sgd_block<true, true>);
  else if (buf) go(sgd_block<true, false>);
  else if (nest) go(sgd_block<false, true>);
  else go(sgd_block<false, false>);
}

void adam_step(const std::vector<OptimizerSlot>& slots, const MnnAdamParams& p) {
  auto go = [&](auto kernel) {
    run_slots(slots, [&](float* w, const float* g, float* const* st, int64_t n) { kernel(w, g, st, n, p); });
  };
  if (p.amsgrad) go(adam_block<true>);
  else go(adam_block<false>);
}

void rmsprop_step(const std::vector<OptimizerSlot>& slots, const MnnRmsPropParams& p) {
  run_slots(slots, [&](float* w, const float* g, float* const* st, int64_t n) { rmsprop_block(w, g, st, n, p); });
}

}  // namespace metalnn::cpu
