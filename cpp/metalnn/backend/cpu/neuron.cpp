#include "metalnn/backend/cpu/neuron.h"

#include <algorithm>
#include <cmath>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// log(1 + exp(z)) without overflow for large z.
inline float softplus1(float z) { return z > 20.f ? z : std::log1p(std::exp(z)); }
inline float sigmoid(float z) { return 1.f / (1.f + std::exp(-z)); }

template <uint32_t T>
inline float fwd(float x, float a, float b) {
  if constexpr (T == MNN_NEURON_NONE) return x;
  if constexpr (T == MNN_NEURON_RELU || T == MNN_NEURON_LEAKY_RELU) return x >= 0.f ? x : a * x;
  if constexpr (T == MNN_NEURON_SIGMOID) return sigmoid(x);
  if constexpr (T == MNN_NEURON_HARD_SIGMOID) return std::min(std::max(a * x + b, 0.f), 1.f);
  if constexpr (T == MNN_NEURON_TANH) return a * std::tanh(b * x);
  if constexpr (T == MNN_NEURON_LINEAR) return a * x + b;
  if constexpr (T == MNN_NEURON_ABSOLUTE) return std::fabs(x);
  if constexpr (T == MNN_NEURON_SOFTPLUS) return a * softplus1(b * x);
  if constexpr (T == MNN_NEURON_ELU) return x >= 0.f ? x : a * std::expm1(x);
  if constexpr (T == MNN_NEURON_RELUN) return std::min(x >= 0.f ? x : a * x, b);
  if constexpr (T == MNN_NEURON_GELU) return 0.5f * x * (1.f + std::erf(x * kInvSqrt2));
  return x;
}

// f'(x); at kinks the derivative of the branch that holds x (x >= 0 takes the right side).
template <uint32_t T>
inline float deriv(float x, float a, float b) {
  if constexpr (T == MNN_NEURON_NONE) return 1.f;
  if constexpr (T == MNN_NEURON_RELU || T == MNN_NEURON_LEAKY_RELU) return x >= 0.f ? 1.f : a;
  if constexpr (T == MNN_NEURON_SIGMOID) {
    float s = sigmoid(x);
    return s * (1.f - s);
  }
  if constexpr (T == MNN_NEURON_HARD_SIGMOID) {
    float z = a * x + b;
    return (z > 0.f && z < 1.f) ? a : 0.f;
  }
  if constexpr (T == MNN_NEURON_TANH) {
    float t = std::tanh(b * x);
    return a * b * (1.f - t * t);
  }
  if constexpr (T == MNN_NEURON_LINEAR) return a;
  if constexpr (T == MNN_NEURON_ABSOLUTE) return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
  if constexpr (T == MNN_NEURON_SOFTPLUS) return a * b * sigmoid(b * x);
  if constexpr (T == MNN_NEURON_ELU) return x >= 0.f ? 1.f : a * std::exp(x);
  if constexpr (T == MNN_NEURON_RELUN) {
    float r = x >= 0.f ? x : a * x;
    return r < b ? (x >= 0.f ? 1.f : a) : 0.f;
  }
  if constexpr (T == MNN_NEURON_GELU)
    return 0.5f * (1.f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
  return 1.f;
}

template <uint32_t T>
void forward_loop(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = fwd<T>(x[i], a, b);
}

template <uint32_t T>
void backward_loop(const float* dy, const float* x, float* dx, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    float d = deriv<T>(x[i], a, b);
    // A NaN input must give a NaN gradient; branch-selected derivatives would hide it.
    dx[i] = x[i] != x[i] ? x[i] : dy[i] * d;
  }
}

template <template <uint32_t> class Op, class... Args>
void by_type(uint32_t type, Args&&... args) {
  switch (type) {
#define MNN_CASE(T) \
  case T: Op<T>::run(args...); break;
    MNN_CASE(MNN_NEURON_NONE) MNN_CASE(MNN_NEURON_RELU) MNN_CASE(MNN_NEURON_LEAKY_RELU)
    MNN_CASE(MNN_NEURON_SIGMOID) MNN_CASE(MNN_NEURON_HARD_SIGMOID) MNN_CASE(MNN_NEURON_TANH)
    MNN_CASE(MNN_NEURON_LINEAR) MNN_CASE(MNN_NEURON_ABSOLUTE) MNN_CASE(MNN_NEURON_SOFTPLUS)
    MNN_CASE(MNN_NEURON_ELU) MNN_CASE(MNN_NEURON_RELUN) MNN_CASE(MNN_NEURON_GELU)
#undef MNN_CASE
    default: break;
  }
}

template <uint32_t T>
struct Fwd {
  static void run(const float* x, float* y, int64_t n, float a, float b) { forward_loop<T>(x, y, n, a, b); }
};
template <uint32_t T>
struct Bwd {
  static void run(const float* dy, const float* x, float* dx, int64_t n, float a, float b) {
    backward_loop<T>(dy, x, dx, n, a, b);
  }
};

constexpr int64_t kGrain = 1 << 14;

}  // namespace

void neuron_forward_block(const float* x, float* y, int64_t n, const MnnNeuronParams& p) {
  by_type<Fwd>(p.type, x, y, n, p.a, p.b);
}

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p) {
  const Tensor* ins[1] = {&x};
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    with_float_blocks(ins, y, b, e, [&](const float* const* in, float* out, int64_t n) {
      by_type<Fwd>(p.type, in[0], out, n, p.a, p.b);
    });
  });
}

void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p) {
  const Tensor* ins[2] = {&dy, &x};
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    with_float_blocks(ins, dx, b, e, [&](const float* const* in, float* out, int64_t n) {
      by_type<Bwd>(p.type, in[0], in[1], out, n, p.a, p.b);
    });
  });
}

}  // namespace metalnn::cpu
