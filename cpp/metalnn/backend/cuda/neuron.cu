#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/neuron.h"

namespace metalnn::cuda {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__device__ __forceinline__ float softplus1(float z) { return z > 20.f ? z : log1pf(expf(z)); }
__device__ __forceinline__ float sigmoid(float z) { return 1.f / (1.f + expf(-z)); }
// std::min/std::max semantics (NaN in the first argument passes through), unlike fminf/fmaxf.
__device__ __forceinline__ float mn(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float mx(float a, float b) { return a < b ? b : a; }

// Same formulas as backend/cpu/neuron.cpp, so results agree to float rounding.
template <uint32_t T>
__device__ __forceinline__ float fwd(float x, float a, float b) {
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
  else return x;
}

template <uint32_t T>
__device__ __forceinline__ float deriv(float x, float a, float b) {
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
  else return 1.f;
}

template <uint32_t T, class S>
__global__ void neuron_forward_kernel(const S* x, S* y, int64_t n, float a, float b) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(y, i, fwd<T>(load(x, i), a, b));
}

template <uint32_t T, class S>
__global__ void neuron_backward_kernel(const S* dy, const S* x, S* dx, int64_t n, float a, float b) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float xv = load(x, i);
    // A NaN input gives a NaN gradient, as on the CPU.
    store(dx, i, xv != xv ? xv : load(dy, i) * deriv<T>(xv, a, b));
  }
}

template <uint32_t T, class S>
void launch(bool backward, const Tensor* dy, const Tensor& x, const Tensor& out, const MnnNeuronParams& p) {
  int64_t n = x.numel();
  if (!n) return;
  auto s = current_stream();
  if (backward)
    neuron_backward_kernel<T, S><<<grid_for(n), kBlock, 0, s>>>(dy->data<S>(), x.data<S>(), out.data<S>(), n, p.a, p.b);
  else
    neuron_forward_kernel<T, S><<<grid_for(n), kBlock, 0, s>>>(x.data<S>(), out.data<S>(), n, p.a, p.b);
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
                                bool o_major, float a, float b) {
  const int64_t total = N * O * P;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t p = i % P, o = (i / P) % O, n = i / (P * O);
    float v = acc[o_major ? (o * N + n) * P + p : i];
    if (bias) v += load(bias, o);
    if (z) store(z, i, v);
    store(y, i, fwd<T>(v, a, b));
  }
}

template <uint32_t T, class S>
void launch_epilogue(const float* acc, const Tensor* bias, const Tensor& y, const Tensor* z, int64_t N, int64_t O,
                     int64_t P, bool o_major, const MnnNeuronParams& p) {
  int64_t n = N * O * P;
  epilogue_kernel<T, S><<<grid_for(n), kBlock, 0, current_stream()>>>(
      acc, bias ? bias->data<S>() : nullptr, y.data<S>(), z ? z->data<S>() : nullptr, N, O, P, o_major, p.a, p.b);
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
#undef MNN_CASE
    default: break;
  }
}

}  // namespace

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
