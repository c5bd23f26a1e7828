#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/neuron.h"

#include <cmath>

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

Co coefficients(const MnnNeuronParams& p) {
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

template <uint32_t T, class S>
__global__ void neuron_forward_kernel(const S* x, S* y, int64_t n, Co q) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(y, i, fwd<T>(load(x, i), q));
}

template <uint32_t T, class S>
__global__ void neuron_backward_kernel(const S* dy, const S* x, S* dx, int64_t n, Co q) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float xv = load(x, i);
    // A NaN input gives a NaN gradient, as on the CPU.
    store(dx, i, xv != xv ? xv : load(dy, i) * deriv<T>(xv, q));
  }
}

template <uint32_t T, class S>
void launch(bool backward, const Tensor* dy, const Tensor& x, const Tensor& out, const MnnNeuronParams& p) {
  int64_t n = x.numel();
  if (!n) return;
  auto s = current_stream();
  if (backward)
    neuron_backward_kernel<T, S><<<grid_for(n), kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), out.data<S>(), n,
                                                                          coefficients(p));
  else
    neuron_forward_kernel<T, S><<<grid_for(n), kBlock, 0, s>>>(x.data<S>(), out.data<S>(), n, coefficients(p));
}

template <class S>
void by_type(bool backward, const Tensor* dy, const Tensor& x, const Tensor& out, const MnnNeuronParams& p) {
  switch (p.type) {
#define MNN_CASE(T) \
  case T: launch<T, S>(backward, dy, x, out, p); break;
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

void run(const char* op, bool backward, const Tensor* dy, const Tensor& x, const Tensor& out,
         const MnnNeuronParams& p) {
  if (x.dtype() == DType::float16) by_type<__half>(backward, dy, x, out, p);
  else by_type<float>(backward, dy, x, out, p);
  check_launch(op);
}

// Fused layer epilogue: z = acc + bias (float32 GEMM result), y = f(z), rounded once.
// acc is (N, O, P), or (O, N, P) when o_major (a convolution's GEMM); y and z are (N, O, P).
template <uint32_t T, class S>
__global__ void epilogue_kernel(const float* acc, const S* bias, S* y, S* z, int64_t N, int64_t O, int64_t P,
                                bool o_major, Co q) {
  const int64_t total = N * O * P;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t p = i % P, o = (i / P) % O, n = i / (P * O);
    float v = acc[o_major ? (o * N + n) * P + p : i];
    if (bias) v += load(bias, o);
    if (z) store(z, i, v);
    store(y, i, fwd<T>(v, q));
  }
}

template <uint32_t T, class S>
void launch_epilogue(const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z, int64_t N, int64_t O,
                     int64_t P, bool o_major, const MnnNeuronParams& p) {
  int64_t n = N * O * P;
  epilogue_kernel<T, S><<<grid_for(n), kBlock, 0, current_stream()>>>(
      acc, bias ? bias->data<S>() : nullptr, y.data<S>(), z ? z->data<S>() : nullptr, N, O, P, o_major,
      coefficients(p));
}

template <class S>
void epilogue_by_type(const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z, int64_t N, int64_t O,
                      int64_t P, bool o_major, const MnnNeuronParams& p) {
  switch (p.type) {
#define MNN_CASE(T) \
  case T: launch_epilogue<T, S>(acc, bias, y, z, N, O, P, o_major, p); break;
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

// ---- PReLU over x as (outer, channels, inner); slopes (channels).
template <class S>
__global__ void prelu_forward_kernel(const S* x, const S* slopes, S* y, int64_t n, int64_t inner, int64_t channels) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = load(x, i);
    store(y, i, v >= 0.f ? v : load(slopes, (i / inner) % channels) * v);
  }
}

template <class S>
__global__ void prelu_backward_input_kernel(const S* dy, const S* x, const S* slopes, S* dx, int64_t n, int64_t inner,
                                            int64_t channels) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = load(x, i), g = load(dy, i);
    // A NaN input gives a NaN gradient, as on the CPU.
    store(dx, i, v != v ? v : (v >= 0.f ? g : load(slopes, (i / inner) % channels) * g));
  }
}

// One block (kBlock threads) per channel: strided partials, then a shared-memory tree sum.
template <class S>
__global__ void prelu_backward_slopes_kernel(const S* dy, const S* x, S* ds, int64_t outer, int64_t inner,
                                             int64_t channels) {
  __shared__ float part[kBlock];
  const int64_t c = blockIdx.x, per = outer * inner;
  float acc = 0.f;
  for (int64_t e = threadIdx.x; e < per; e += blockDim.x) {
    const int64_t i = ((e / inner) * channels + c) * inner + e % inner;
    const float v = load(x, i);
    acc += v >= 0.f ? 0.f : load(dy, i) * v;  // a NaN x propagates
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) store(ds, c, part[0]);
}

template <class S>
void prelu_launch(int which, const Tensor* dy, const Tensor& x, const Tensor& slopes, const Tensor& out,
                  const MnnPReLUParams& p) {
  const int64_t n = x.numel(), inner = p.inner, channels = p.channels;
  auto s = current_stream();
  if (which == 2) {
    if (channels)
      prelu_backward_slopes_kernel<S><<<(unsigned)channels, kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), out.data<S>(),
                                                                            (int64_t)p.outer, inner, channels);
    return;
  }
  if (!n) return;
  if (which == 0)
    prelu_forward_kernel<S><<<grid_for(n), kBlock, 0, s>>>(x.data<S>(), slopes.data<S>(), out.data<S>(), n, inner,
                                                            channels);
  else
    prelu_backward_input_kernel<S><<<grid_for(n), kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), slopes.data<S>(),
                                                                   out.data<S>(), n, inner, channels);
}

void prelu_run(const char* op, int which, const Tensor* dy, const Tensor& x, const Tensor& slopes, const Tensor& out,
               const MnnPReLUParams& p) {
  if (x.dtype() == DType::float16) prelu_launch<__half>(which, dy, x, slopes, out, p);
  else prelu_launch<float>(which, dy, x, slopes, out, p);
  check_launch(op);
}

}  // namespace

void prelu_forward(const Tensor& x, const Tensor& slopes, const Tensor& y, const MnnPReLUParams& p) {
  prelu_run("prelu_forward", 0, nullptr, x, slopes, y, p);
}

void prelu_backward_input(const Tensor& dy, const Tensor& x, const Tensor& slopes, const Tensor& dx,
                          const MnnPReLUParams& p) {
  prelu_run("prelu_backward_input", 1, &dy, x, slopes, dx, p);
}

// The slopes tensor is unused here: prelu_run takes one for the elementwise kernels.
void prelu_backward_slopes(const Tensor& dy, const Tensor& x, const Tensor& ds, const MnnPReLUParams& p) {
  prelu_run("prelu_backward_slopes", 2, &dy, x, ds, ds, p);
}

void bias_neuron_epilogue(const char* op, const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z,
                          int64_t N, int64_t O, int64_t P, bool o_major, const MnnNeuronParams& p) {
  if (N * O * P == 0) return;
  if (y.dtype() == DType::float16) epilogue_by_type<__half>(acc, bias, y, z, N, O, P, o_major, p);
  else epilogue_by_type<float>(acc, bias, y, z, N, O, P, o_major, p);
  check_launch(op);
}

void neuron_forward(const Tensor& x, const Tensor& y, const MnnNeuronParams& p) {
  run("neuron_forward", false, nullptr, x, y, p);
}

void neuron_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNeuronParams& p) {
  run("neuron_backward", true, &dy, x, dx, p);
}

}  // namespace metalnn::cuda
