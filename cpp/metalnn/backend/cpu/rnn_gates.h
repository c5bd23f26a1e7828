// Branch-free gate functions shared by the CPU RNN kernels: written so gcc vectorises the
// loops that call them without fast-math.
#pragma once
#include <cstdint>

// The gate loops use selects (clamps, rounding); gcc only if-converts and vectorises them
// when floating-point traps need not be preserved, which nothing here relies on.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace metalnn::cpu {

// exp(x) / 2^n for n = round(x / ln2): Cody-Waite reduction to r = x - n ln2 (|r| <= ln2/2),
// then a degree-6 polynomial. V is float or a gcc float vector (the CPU LSTM kernels' lanes).
template <class V>
inline V exp_reduced(V x, V n) {
  const V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// exp for the gates, written branch-free so the step loops vectorise: x = n ln2 + r,
// exp(r) by a degree-6 polynomial (|r| <= ln2/2), 2^n built in the exponent bits.
// About 1 ulp; NaN stays NaN (the clamps keep a NaN first operand), +-Inf saturate.
inline float exp_gate(float x) {
  // Ternaries rather than std::min/max (which return references) and a truncating int
  // conversion rather than std::floor: both keep gcc's vectoriser happy without fast-math.
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504089f;
  const int32_t k = (int32_t)(t + (t >= 0.f ? 0.5f : -0.5f));  // round to nearest
  const float n = (float)k;
  return exp_reduced(x, n) * __builtin_bit_cast(float, (k + 127) << 23);
}

inline float sigmoid_gate(float x) { return 1.0f / (1.0f + exp_gate(-x)); }

// tanh = sign(x) (1 - e) / (1 + e), e = exp(-2|x|): absolute error ~1e-7 everywhere.
inline float tanh_gate(float x) {
  const float e = exp_gate(-2.0f * __builtin_fabsf(x));
  return __builtin_copysignf((1.0f - e) / (1.0f + e), x);
}

// The LSTM cell on units [0, n) of one row, in place on its gate slots: gi..go hold the
// pre-activations without bias; bias and the peephole weights pw (3, H) have stride H.
template <bool Peep>
void lstm_row_forward(float* __restrict gi, float* __restrict gf, float* __restrict gc, float* __restrict go,
                      const float* __restrict bias, const float* __restrict pw, const float* __restrict c0,
                      float* __restrict cr, float* __restrict hr, float* __restrict yr, int64_t H, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    float ai = gi[j] + bias[j], af = gf[j] + bias[H + j];
    if (Peep) {
      ai += pw[j] * c0[j];
      af += pw[H + j] * c0[j];
    }
    const float i = sigmoid_gate(ai), f = sigmoid_gate(af);
    const float gg = tanh_gate(gc[j] + bias[2 * H + j]);
    const float c = f * c0[j] + i * gg;
    float ao = go[j] + bias[3 * H + j];
    if (Peep) ao += pw[2 * H + j] * c;
    const float o = sigmoid_gate(ao);
    const float h = o * tanh_gate(c);
    gi[j] = i;
    gf[j] = f;
    gc[j] = gg;
    go[j] = o;
    cr[j] = c;
    hr[j] = h;
    yr[j] = h;
  }
}

}  // namespace metalnn::cpu
