// Neuron formulas shared by the CUDA neuron kernels (neuron.cu) and the fused layer epilogue
// (epilogue.cu): forward value and derivative per MnnNeuronType, computed in float32.
#pragma once
#include <cmath>

#include "kernels/neuron_params.h"
#include "metalnn/backend/cuda/common.cuh"

namespace metalnn::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__device__ __forceinline__ float softplus1(float z) { return z > 20.f ? z : log1pf(expf(z)); }
__device__ __forceinline__ float sigmoid(float z) { return 1.f / (1.f + expf(-z)); }
// std::min/std::max semantics (NaN in the first argument passes through), unlike fminf/fmaxf.
__device__ __forceinline__ float mn(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float mx(float a, float b) { return a < b ? b : a; }

// Coefficients plus k: ln(c) for exponential (c^z = exp(k z)), 1 / ln(c) for logarithm
// (log_c z = k ln z); c = -1 means base e (k = 1), as in MPS. Computed once on the host.
struct Co {
  float a, b, c, k;
};

inline Co coefficients(const MnnNeuronParams& p) {
  Co co{p.a, p.b, p.c, 1.f};
  if (p.c != -1.f && p.type == MNN_NEURON_EXPONENTIAL) co.k = std::log(p.c);
  if (p.c != -1.f && p.type == MNN_NEURON_LOGARITHM) co.k = 1.f / std::log(p.c);
  return co;
}

// Same formulas as backend/cpu/neuron.cpp, so results agree to float rounding.
template <uint32_t T>
__device__ __forceinline__ float fwd(float x, const Co& q) {
  const float a = q.a, b = q.b;
  if constexpr (T == MNN_NEURON_RELU || T == MNN_NEURON_LEAKY_RELU) return x >= 0.f ? x : a * x;
  else if constexpr (T == MNN_NEURON_SIGMOID) return sigmoid(x);
  else if constexpr (T == MNN_NEURON_HARD_SIGMOID) return mn(mx(a * x + b, 0.f), 1.f);
  else if constexpr (T == MNN_NEURON_TANH) return a * tanhf(b * x);
  else if constexpr (T == MNN_NEURON_LINEAR) return a * x + b;
  else if constexpr (T == MNN_NEURON_ABSOLUTE) return fabsf(x);
  else if constexpr (T == MNN_NEURON_SOFTPLUS) return a * softplus1(b * x);
  else if constexpr (T == MNN_NEURON_ELU) return x >= 0.f ? x : a * expm1f(x);
  else if constexpr (T == MNN_NEURON_RELUN) return mn(x >= 0.f ? x : a * x, b);
  else if constexpr (T == MNN_NEURON_GELU) return 0.5f * x * (1.f + erff(x * kInvSqrt2));
  else if constexpr (T == MNN_NEURON_SOFTSIGN) return x / (1.f + fabsf(x));
  else if constexpr (T == MNN_NEURON_POWER) return powf(a * x + b, q.c);
  else if constexpr (T == MNN_NEURON_EXPONENTIAL) return expf(q.k * (a * x + b));
  else if constexpr (T == MNN_NEURON_LOGARITHM) return q.k * logf(a * x + b);
  else if constexpr (T == MNN_NEURON_SILU) return x * sigmoid(x);
  else if constexpr (T == MNN_NEURON_MISH) return x * tanhf(softplus1(x));
  else if constexpr (T == MNN_NEURON_SELU) return b * (x >= 0.f ? x : a * expm1f(x));
  else return x;
}

template <uint32_t T>
__device__ __forceinline__ float deriv(float x, const Co& q) {
  const float a = q.a, b = q.b;
  if constexpr (T == MNN_NEURON_RELU || T == MNN_NEURON_LEAKY_RELU) return x >= 0.f ? 1.f : a;
  else if constexpr (T == MNN_NEURON_SIGMOID) {
    float s = sigmoid(x);
    return s * (1.f - s);
  } else if constexpr (T == MNN_NEURON_HARD_SIGMOID) {
    float z = a * x + b;
    return (z > 0.f && z < 1.f) ? a : 0.f;
  } else if constexpr (T == MNN_NEURON_TANH) {
    float t = tanhf(b * x);
    return a * b * (1.f - t * t);
  } else if constexpr (T == MNN_NEURON_LINEAR) return a;
  else if constexpr (T == MNN_NEURON_ABSOLUTE) return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
  else if constexpr (T == MNN_NEURON_SOFTPLUS) return a * b * sigmoid(b * x);
  else if constexpr (T == MNN_NEURON_ELU) return x >= 0.f ? 1.f : a * expf(x);
  else if constexpr (T == MNN_NEURON_RELUN) {
    float r = x >= 0.f ? x : a * x;
    return r < b ? (x >= 0.f ? 1.f : a) : 0.f;
  } else if constexpr (T == MNN_NEURON_GELU)
    return 0.5f * (1.f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  else if constexpr (T == MNN_NEURON_SOFTSIGN) {
    float d = 1.f + fabsf(x);
    return 1.f / (d * d);
  } else if constexpr (T == MNN_NEURON_POWER) return q.c * a * powf(a * x + b, q.c - 1.f);
  else if constexpr (T == MNN_NEURON_EXPONENTIAL) return a * q.k * expf(q.k * (a * x + b));
  else if constexpr (T == MNN_NEURON_LOGARITHM) {
    float z = a * x + b;
    return z < 0.f ? __int_as_float(0x7fc00000) : a * q.k / z;  // NaN outside the domain, like the forward
  } else if constexpr (T == MNN_NEURON_SILU) {
    float s = sigmoid(x);
    return s * (1.f + x * (1.f - s));
  } else if constexpr (T == MNN_NEURON_MISH) {
    float t = tanhf(softplus1(x));
    return t + x * sigmoid(x) * (1.f - t * t);
  } else if constexpr (T == MNN_NEURON_SELU) return b * (x >= 0.f ? 1.f : a * expf(x));
  else return 1.f;
}

}  // namespace
}  // namespace metalnn::cuda

// Expands X(T) for every MnnNeuronType, e.g. the cases of a switch that picks a kernel.
#define MNN_FOR_EACH_NEURON(X)                                                                   \
  X(MNN_NEURON_NONE) X(MNN_NEURON_RELU) X(MNN_NEURON_LEAKY_RELU) X(MNN_NEURON_SIGMOID)           \
  X(MNN_NEURON_HARD_SIGMOID) X(MNN_NEURON_TANH) X(MNN_NEURON_LINEAR) X(MNN_NEURON_ABSOLUTE)      \
  X(MNN_NEURON_SOFTPLUS) X(MNN_NEURON_ELU) X(MNN_NEURON_RELUN) X(MNN_NEURON_GELU)                \
  X(MNN_NEURON_SOFTSIGN) X(MNN_NEURON_POWER) X(MNN_NEURON_EXPONENTIAL) X(MNN_NEURON_LOGARITHM)   \
  X(MNN_NEURON_SILU) X(MNN_NEURON_MISH) X(MNN_NEURON_SELU)
