#include "metalnn/backend/cpu/neuron.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// log(1 + exp(z)) without overflow for large z.
inline float softplus1(float z) { return z > 20.f ? z : std::log1p(std::exp(z)); }
inline float sigmoid(float z) { return 1.f / (1.f + std::exp(-z)); }

// The coefficients plus k, a per-call constant: ln(c) for exponential (c^z = exp(k z)),
// 1 / ln(c) for logarithm (log_c z = k ln z); c = -1 means base e (k = 1), as in MPS.
struct Co {
  float a, b, c, k;
};

Co coefficients(const MnnNeuronParams& p) {
  Co co{p.a, p.b, p.c, 1.f};
  if (p.c != -1.f && p.type == MNN_NEURON_EXPONENTIAL) co.k = std::log(p.c);
  if (p.c != -1.f && p.type == MNN_NEURON_LOGARITHM) co.k = 1.f / std::log(p.c);
  return co;
}

template <uint32_t T>
inline float fwd(float x, Co q) {
  const float a = q.a, b = q.b;
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
  if constexpr (T == MNN_NEURON_SOFTSIGN) return x / (1.f + std::fabs(x));
  if constexpr (T == MNN_NEURON_POWER) return std::pow(a * x + b, q.c);
  if constexpr (T == MNN_NEURON_EXPONENTIAL) return std::exp(q.k * (a * x + b));
  if constexpr (T == MNN_NEURON_LOGARITHM) return q.k * std::log(a * x + b);
  if constexpr (T == MNN_NEURON_SILU) return x * sigmoid(x);
  if constexpr (T == MNN_NEURON_MISH) return x * std::tanh(softplus1(x));
  if constexpr (T == MNN_NEURON_SELU) return b * (x >= 0.f ? x : a * std::expm1(x));
  return x;
}

// f'(x); at kinks the derivative of the branch that holds x (x >= 0 takes the right side).
template <uint32_t T>
inline float deriv(float x, Co q) {
  const float a = q.a, b = q.b;
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
  if constexpr (T == MNN_NEURON_SOFTSIGN) {
    float d = 1.f + std::fabs(x);
    return 1.f / (d * d);
  }
  if constexpr (T == MNN_NEURON_POWER) return q.c * a * std::pow(a * x + b, q.c - 1.f);
  if constexpr (T == MNN_NEURON_EXPONENTIAL) return a * q.k * std::exp(q.k * (a * x + b));
  if constexpr (T == MNN_NEURON_LOGARITHM) {
    float z = a * x + b;
    return z < 0.f ? kNaN : a * q.k / z;  // outside the domain, like the NaN forward
  }
  if constexpr (T == MNN_NEURON_SILU) {
    float s = sigmoid(x);
    return s * (1.f + x * (1.f - s));
  }
  if constexpr (T == MNN_NEURON_MISH) {
    float t = std::tanh(softplus1(x));
    return t + x * sigmoid(x) * (1.f - t * t);
  }
  if constexpr (T == MNN_NEURON_SELU) return b * (x >= 0.f ? 1.f : a * std::exp(x));
  return 1.f;
}

template <uint32_t T>
void forward_loop(const float* x, float* y, int64_t n, const Co q) {  // by value: y cannot alias it
  for (int64_t i = 0; i < n; ++i) y[i] = fwd<T>(x[i], q);
}

template <uint32_t T>
void backward_loop(const float* dy, const float* x, float* dx, int64_t n, Co q) {
  for (int64_t i = 0; i < n; ++i) {
    float d = deriv<T>(x[i], q);
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
    MNN_CASE(MNN_NEURON_SOFTSIGN) MNN_CASE(MNN_NEURON_POWER) MNN_CASE(MNN_NEURON_EXPONENTIAL)
    MNN_CASE(MNN_NEURON_LOGARITHM) MNN_CASE(MNN_NEURON_SILU) MNN_CASE(MNN_NEURON_MISH)
    MNN_CASE(MNN_NEURON_SELU)
#undef MNN_CASE
    default: break;
  }
}

template <uint32_t T>
struct Fwd {
  static void run(const float* x, float* y, int64_t n, Co q) { forward_loop<T>(x, y, n, q); }
};
template <uint32_t T>
struct Bwd {
  static void run(const float* dy, const float* x, float* dx, int64_t n, Co q) {
    backward_loop<T>(dy, x, dx, n, q);
  }
};

constexpr int64_t kGrain = 1 << 14;

// ---- PReLU: elements [begin, begin + n) of x as (outer, channels, inner) fall into runs of
// one channel; seg(offset, length, channel) is called per run.
template <class F>
inline void channel_runs(int64_t begin, int64_t n, int64_t inner, int64_t channels, F&& seg) {
  for (int64_t i = 0; i < n;) {
    const int64_t g = begin + i, row = g / inner, len = std::min(inner - (g - row * inner), n - i);
    seg(i, len, row % channels);
    i += len;
  }
}

// fn(in_ptrs, out, n, begin) over float32 blocks of at most 1024 elements (half widened).
template <size_t NIn, class Fn>
void prelu_blocks(const Tensor* const (&ins)[NIn], const Tensor& out, Fn&& fn) {
  parallel_for(out.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t b0 = b; b0 < e; b0 += 1024) {
      const int64_t e0 = std::min(e, b0 + 1024);
      with_float_blocks(ins, out, b0, e0,
                        [&](const float* const* in, float* o, int64_t n) { fn(in, o, n, b0); });
    }
  });
}

}  // namespace

void neuron_forward_block(const float* x, float* y, int64_t n, const MnnNeuronParams& p) {
  by_type<Fwd>(p.type, x, y, n, coefficients(p));
}

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p) {
  const Tensor* ins[1] = {&x};
  const Co q = coefficients(p);
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    with_float_blocks(ins, y, b, e, [&](const float* const* in, float* out, int64_t n) {
      by_type<Fwd>(p.type, in[0], out, n, q);
    });
  });
}

void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p) {
  const Tensor* ins[2] = {&dy, &x};
  const Co q = coefficients(p);
  parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
    with_float_blocks(ins, dx, b, e, [&](const float* const* in, float* out, int64_t n) {
      by_type<Bwd>(p.type, in[0], in[1], out, n, q);
    });
  });
}

void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p) {
  const std::vector<float> s = to_float_vector(slopes);
  const Tensor* ins[1] = {&x};
  prelu_blocks(ins, y, [&](const float* const* in, float* out, int64_t n, int64_t begin) {
    channel_runs(begin, n, p.inner, p.channels, [&](int64_t off, int64_t len, int64_t c) {
      const float a = s[(size_t)c];
      const float* xi = in[0] + off;
      float* yo = out + off;
      for (int64_t i = 0; i < len; ++i) yo[i] = xi[i] >= 0.f ? xi[i] : a * xi[i];
    });
  });
}

void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p) {
  const std::vector<float> s = to_float_vector(slopes);
  const Tensor* ins[2] = {&dy, &x};
  prelu_blocks(ins, dx, [&](const float* const* in, float* out, int64_t n, int64_t begin) {
    channel_runs(begin, n, p.inner, p.channels, [&](int64_t off, int64_t len, int64_t c) {
      const float a = s[(size_t)c];
      const float *g = in[0] + off, *xi = in[1] + off;
      float* o = out + off;
      // A NaN input gives a NaN gradient, as for the other neurons.
      for (int64_t i = 0; i < len; ++i) o[i] = xi[i] != xi[i] ? xi[i] : (xi[i] >= 0.f ? g[i] : a * g[i]);
    });
  });
}

void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p) {
  const int64_t rows = (int64_t)p.outer * p.channels, inner = p.inner;
  // One float64 partial per (n, c) row, summed per channel in a fixed order: deterministic
  // whatever the thread count.
  std::vector<double> partial((size_t)rows, 0.0);
  const bool half = x.dtype() == DType::float16;
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t r0, int64_t r1) {
    float gbuf[1024], xbuf[1024];
    for (int64_t r = r0; r < r1; ++r) {
      double acc = 0.0;
      for (int64_t i0 = 0; i0 < inner; i0 += 1024) {
        const int64_t n = std::min<int64_t>(1024, inner - i0), at = r * inner + i0;
        const float *g, *xi;
        if (half) {
          half_to_float_n(dy.data<uint16_t>() + at, gbuf, (size_t)n);
          half_to_float_n(x.data<uint16_t>() + at, xbuf, (size_t)n);
          g = gbuf;
          xi = xbuf;
        } else {
          g = dy.data<float>() + at;
          xi = x.data<float>() + at;
        }
        // d(a*x)/da = x on the negative side; NaN x propagates. Eight independent lanes let
        // the compiler vectorise the sum (a fixed order: the result does not depend on threads).
        float lanes[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
          for (int l = 0; l < 8; ++l) lanes[l] += xi[i + l] >= 0.f ? 0.f : g[i + l] * xi[i + l];
        float block = 0.f;
        for (float v : lanes) block += v;
        for (; i < n; ++i) block += xi[i] >= 0.f ? 0.f : g[i] * xi[i];
        acc += block;
      }
      partial[(size_t)r] = acc;
    }
  });
  std::vector<float> out((size_t)p.channels, 0.f);
  for (int64_t c = 0; c < (int64_t)p.channels; ++c) {
    double sum = 0.0;
    for (int64_t n = 0; n < (int64_t)p.outer; ++n) sum += partial[(size_t)(n * p.channels + c)];
    out[(size_t)c] = (float)sum;
  }
  store_floats(out.data(), ds);
}

}  // namespace metalnn::cpu
