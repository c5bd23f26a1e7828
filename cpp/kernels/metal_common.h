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

// ---- Shared by the fused epilogues (conv.metal, linear.metal): the neuron y = f(x) of
// neuron_params.h in float32 (neuron.metal's forward uses it too).
#include "neuron_params.h"

inline float mnn_softplus(float z) { return z > 20.0f ? z : mnn_log1p(exp(z)); }  // no overflow for large z

// Exponential c^z = exp(k z) with k = ln c; logarithm log_c z = k ln z with k = 1 / ln c; c = -1 means e.
inline float mnn_neuron_base(constant MnnNeuronParams& p) {
  if (p.c == -1.0f) return 1.0f;
  return p.type == MNN_NEURON_LOGARITHM ? 1.0f / log(p.c) : log(p.c);
}

inline float mnn_neuron(float x, constant MnnNeuronParams& p) {
  const float a = p.a, b = p.b;
  switch (p.type) {
    case MNN_NEURON_RELU:
    case MNN_NEURON_LEAKY_RELU: return x >= 0.0f ? x : a * x;
    case MNN_NEURON_SIGMOID: return mnn_sigmoid(x);
    case MNN_NEURON_HARD_SIGMOID: {
      float z = a * x + b;  // compares, not fmin/fmax, so a NaN passes through as on the CPU
      return z < 0.0f ? 0.0f : (z > 1.0f ? 1.0f : z);
    }
    case MNN_NEURON_TANH: return a * tanh(b * x);
    case MNN_NEURON_LINEAR: return a * x + b;
    case MNN_NEURON_ABSOLUTE: return fabs(x);
    case MNN_NEURON_SOFTPLUS: return a * mnn_softplus(b * x);
    case MNN_NEURON_ELU: return x >= 0.0f ? x : a * mnn_expm1(x);
    case MNN_NEURON_RELUN: {
      float r = x >= 0.0f ? x : a * x;
      return b < r ? b : r;
    }
    case MNN_NEURON_GELU: return 0.5f * x * (1.0f + mnn_erf(x * 0.70710678118654752f));
    case MNN_NEURON_SOFTSIGN: return x / (1.0f + fabs(x));
    case MNN_NEURON_POWER: return pow(a * x + b, p.c);  // C99 pow: NaN for a negative base, fractional c
    case MNN_NEURON_EXPONENTIAL: return exp(mnn_neuron_base(p) * (a * x + b));
    case MNN_NEURON_LOGARITHM: return mnn_neuron_base(p) * log(a * x + b);
    case MNN_NEURON_SILU: return x * mnn_sigmoid(x);
    case MNN_NEURON_MISH: return x * tanh(mnn_softplus(x));
    case MNN_NEURON_SELU: return b * (x >= 0.0f ? x : a * mnn_expm1(x));
    default: return x;
  }
}

// ---- Tiled matrix product for conv.metal / linear.metal: one 32x32 tile of C = A (M x K) *
// B (K x N) per threadgroup of 16x16 threads, each thread owning C rows m0+ty+{0,16} and
// columns n0+tx+{0,16}. `Operands` gives a(m, k) and b(k, n) in float (implicit GEMM: the
// convolutions gather them from images); out-of-range elements load as 0. The K loop runs
// in ascending k, so half accumulation (acc = half(acc + a*b) after every step) rounds in
// the order of the CPU loops. as_ / bs: threadgroup arrays of MNN_TILE_K * MNN_TILE floats.
#define MNN_TILE 32
#define MNN_TILE_K 16

template <typename Operands>
inline void mnn_gemm_tile(Operands op, uint M, uint N, uint K, uint m0, uint n0, uint2 tid,
                          threadgroup float* as_, threadgroup float* bs, bool half_acc, thread float* acc) {
  const uint t = tid.y * 16 + tid.x;
  for (uint i = 0; i < 4; ++i) acc[i] = 0.0f;
  for (uint k0 = 0; k0 < K; k0 += MNN_TILE_K) {
    for (uint e = t; e < MNN_TILE_K * MNN_TILE; e += 256) {
      const uint kk = e % MNN_TILE_K, mm = e / MNN_TILE_K;  // as_[kk][mm]
      as_[kk * MNN_TILE + mm] = (m0 + mm < M && k0 + kk < K) ? op.a(m0 + mm, k0 + kk) : 0.0f;
      const uint nn = e % MNN_TILE, kb = e / MNN_TILE;  // bs[kb][nn]
      bs[kb * MNN_TILE + nn] = (n0 + nn < N && k0 + kb < K) ? op.b(k0 + kb, n0 + nn) : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const uint kend = min((uint)MNN_TILE_K, K - k0);  // the tail: no extra (0 * b) steps
    for (uint kk = 0; kk < kend; ++kk) {
      const float a0 = as_[kk * MNN_TILE + tid.y], a1 = as_[kk * MNN_TILE + tid.y + 16];
      const float b0 = bs[kk * MNN_TILE + tid.x], b1 = bs[kk * MNN_TILE + tid.x + 16];
      if (half_acc) {
        acc[0] = float(half(acc[0] + a0 * b0));
        acc[1] = float(half(acc[1] + a0 * b1));
        acc[2] = float(half(acc[2] + a1 * b0));
        acc[3] = float(half(acc[3] + a1 * b1));
      } else {
        acc[0] += a0 * b0;
        acc[1] += a0 * b1;
        acc[2] += a1 * b0;
        acc[3] += a1 * b1;
      }
    }
    // The next iteration overwrites the tiles: every thread must be done reading them.
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
}
