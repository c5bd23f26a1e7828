// Helpers shared by the MSL kernels: math MSL lacks (expm1, log1p, erf) and float/half
// load-store, so each kernel body is written once as a template over the storage type.
#pragma once
#include <metal_stdlib>
using namespace metal;

// exp(x) - 1 without cancellation near 0 (Kahan: the rounding error of u cancels in (u-1)/log(u)).
inline float mnn_expm1(float x) {
  float u = exp(x);
  if (u == 1.0f) return x;
  float um1 = u - 1.0f;
  if (um1 == -1.0f) return -1.0f;
  if (isinf(u)) return u;
  return um1 * x / log(u);
}

// log(1 + x) without cancellation near 0 (Kahan's trick).
inline float mnn_log1p(float x) {
  float u = 1.0f + x;
  if (u == 1.0f) return x;
  if (isinf(u)) return u;
  return log(u) * x / (u - 1.0f);
}

// erf via a Chebyshev fit of erfc (fractional error < 1.2e-7).
inline float mnn_erf(float x) {
  float z = fabs(x);
  float t = 1.0f / (1.0f + 0.5f * z);
  float r = t * exp(-z * z - 1.26551223f +
                    t * (1.00002368f +
                         t * (0.37409196f +
                              t * (0.09678418f +
                                   t * (-0.18628806f +
                                        t * (0.27886807f +
                                             t * (-1.13520398f +
                                                  t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
  float e = 1.0f - r;
  return x >= 0.0f ? e : -e;
}

inline float mnn_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

// Storage loads and stores: values are computed in float and rounded once on store.
template <typename T>
inline float mnn_load(device const T* p, uint i) {
  return float(p[i]);
}
template <typename T>
inline void mnn_store(device T* p, uint i, float v) {
  p[i] = T(v);
}

// Threadgroup-wide max / sum of one float per thread: simd-group reduction, one partial per
// simd-group in `partial` (>= simdgroups_per_threadgroup floats), then every thread folds the
// partials. The second barrier lets the caller reuse `partial` right away.
inline float mnn_threadgroup_max(float v, threadgroup float* partial, uint lane, uint sg, uint nsg) {
  v = simd_max(v);
  if (lane == 0) partial[sg] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float r = partial[0];
  for (uint i = 1; i < nsg; ++i) r = fmax(r, partial[i]);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return r;
}

inline float mnn_threadgroup_sum(float v, threadgroup float* partial, uint lane, uint sg, uint nsg) {
  v = simd_sum(v);
  if (lane == 0) partial[sg] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float r = 0.0f;
  for (uint i = 0; i < nsg; ++i) r += partial[i];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return r;
}
