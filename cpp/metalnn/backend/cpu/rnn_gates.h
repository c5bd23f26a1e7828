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
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * __builtin_bit_cast(float, (k + 127) << 23);
}

inline float sigmoid_gate(float x) { return 1.0f / (1.0f + exp_gate(-x)); }

// tanh = sign(x) (1 - e) / (1 + e), e = exp(-2|x|): absolute error ~1e-7 everywhere.
inline float tanh_gate(float x) {
  const float e = exp_gate(-2.0f * __builtin_fabsf(x));
  return __builtin_copysignf((1.0f - e) / (1.0f + e), x);
}

}  // namespace metalnn::cpu
