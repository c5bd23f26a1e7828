// Neuron (activation) kernels, forward and backward, float32 and float16 storage, computed
// in float32 (rounded once on store). The math follows neuron_params.h and
// cpp/metalnn/backend/cpu/neuron.cpp.
//
// Kernels and buffers (one thread per element, 1-D grid of `count` threads rounded up):
//   neuron_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]],
//                                    MnnNeuronParams [[buffer(2)]], uint count [[buffer(3)]])
//   neuron_backward_{float32,float16}(dy [[buffer(0)]], x [[buffer(1)]], dx [[buffer(2)]],
//                                     MnnNeuronParams [[buffer(3)]], uint count [[buffer(4)]])
// PReLU, x viewed as (outer, channels, inner), slopes (channels):
//   prelu_forward_{float32,float16}(x [[buffer(0)]], slopes [[buffer(1)]], y [[buffer(2)]],
//                                   MnnPReLUParams [[buffer(3)]], uint count [[buffer(4)]])
//   prelu_backward_input_{float32,float16}(dy [[buffer(0)]], x [[buffer(1)]], slopes [[buffer(2)]],
//                                          dx [[buffer(3)]], MnnPReLUParams [[buffer(4)]], uint count [[buffer(5)]])
// Reduction, one threadgroup per channel (grid channels * threadgroup size; the threadgroup
// whole simd-groups of 32, <= 1024):
//   prelu_backward_slopes_{float32,float16}(dy [[buffer(0)]], x [[buffer(1)]], dslopes [[buffer(2)]],
//                                           MnnPReLUParams [[buffer(3)]])
#include <metal_stdlib>
#include "metal_common.h"
#include "neuron_params.h"
using namespace metal;

constant float kInvSqrt2 = 0.70710678118654752f;
constant float kInvSqrt2Pi = 0.39894228040143268f;

// f(x) is shared with the fused layer epilogues (metal_common.h).
inline float neuron_f(float x, constant MnnNeuronParams& p) { return mnn_neuron(x, p); }

// f'(x); at kinks the derivative of the branch that holds x (x >= 0 takes the right side).
inline float neuron_df(float x, constant MnnNeuronParams& p) {
  const float a = p.a, b = p.b;
  switch (p.type) {
    case MNN_NEURON_RELU:
    case MNN_NEURON_LEAKY_RELU: return x >= 0.0f ? 1.0f : a;
    case MNN_NEURON_SIGMOID: {
      float s = mnn_sigmoid(x);
      return s * (1.0f - s);
    }
    case MNN_NEURON_HARD_SIGMOID: {
      float z = a * x + b;
      return (z > 0.0f && z < 1.0f) ? a : 0.0f;
    }
    case MNN_NEURON_TANH: {
      float t = tanh(b * x);
      return a * b * (1.0f - t * t);
    }
    case MNN_NEURON_LINEAR: return a;
    case MNN_NEURON_ABSOLUTE: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case MNN_NEURON_SOFTPLUS: return a * b * mnn_sigmoid(b * x);
    case MNN_NEURON_ELU: return x >= 0.0f ? 1.0f : a * exp(x);
    case MNN_NEURON_RELUN: {
      float r = x >= 0.0f ? x : a * x;
      return r < b ? (x >= 0.0f ? 1.0f : a) : 0.0f;
    }
    case MNN_NEURON_GELU: return 0.5f * (1.0f + mnn_erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp(-0.5f * x * x);
    case MNN_NEURON_SOFTSIGN: {
      float d = 1.0f + fabs(x);
      return 1.0f / (d * d);
    }
    case MNN_NEURON_POWER: return p.c * a * pow(a * x + b, p.c - 1.0f);
    case MNN_NEURON_EXPONENTIAL: {
      float k = mnn_neuron_base(p);
      return a * k * exp(k * (a * x + b));
    }
    case MNN_NEURON_LOGARITHM: {
      float z = a * x + b;
      return z < 0.0f ? NAN : a * mnn_neuron_base(p) / z;  // outside the domain, like the NaN forward
    }
    case MNN_NEURON_SILU: {
      float s = mnn_sigmoid(x);
      return s * (1.0f + x * (1.0f - s));
    }
    case MNN_NEURON_MISH: {
      float t = tanh(mnn_softplus(x));
      return t + x * mnn_sigmoid(x) * (1.0f - t * t);
    }
    case MNN_NEURON_SELU: return b * (x >= 0.0f ? 1.0f : a * exp(x));
    default: return 1.0f;
  }
}

template <typename T>
inline void neuron_forward(device const T* x, device T* y, constant MnnNeuronParams& p, uint count, uint gid) {
  if (gid >= count) return;
  mnn_store(y, gid, neuron_f(mnn_load(x, gid), p));
}

template <typename T>
inline void neuron_backward(device const T* dy, device const T* x, device T* dx, constant MnnNeuronParams& p,
                            uint count, uint gid) {
  if (gid >= count) return;
  float v = mnn_load(x, gid);
  // A NaN input gives a NaN gradient; the branch-selected derivative would hide it.
  mnn_store(dx, gid, isnan(v) ? v : mnn_load(dy, gid) * neuron_df(v, p));
}

kernel void neuron_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                   constant MnnNeuronParams& p [[buffer(2)]], constant uint& count [[buffer(3)]],
                                   uint gid [[thread_position_in_grid]]) {
  neuron_forward(x, y, p, count, gid);
}

kernel void neuron_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                   constant MnnNeuronParams& p [[buffer(2)]], constant uint& count [[buffer(3)]],
                                   uint gid [[thread_position_in_grid]]) {
  neuron_forward(x, y, p, count, gid);
}

kernel void neuron_backward_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                    device float* dx [[buffer(2)]], constant MnnNeuronParams& p [[buffer(3)]],
                                    constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  neuron_backward(dy, x, dx, p, count, gid);
}

kernel void neuron_backward_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                    device half* dx [[buffer(2)]], constant MnnNeuronParams& p [[buffer(3)]],
                                    constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  neuron_backward(dy, x, dx, p, count, gid);
}

// ---- PReLU

inline uint prelu_channel(uint gid, constant MnnPReLUParams& p) { return (gid / p.inner) % p.channels; }

template <typename T>
inline void prelu_forward(device const T* x, device const T* slopes, device T* y, constant MnnPReLUParams& p,
                          uint count, uint gid) {
  if (gid >= count) return;
  float v = mnn_load(x, gid);
  mnn_store(y, gid, v >= 0.0f ? v : mnn_load(slopes, prelu_channel(gid, p)) * v);
}

template <typename T>
inline void prelu_backward_input(device const T* dy, device const T* x, device const T* slopes, device T* dx,
                                 constant MnnPReLUParams& p, uint count, uint gid) {
  if (gid >= count) return;
  float v = mnn_load(x, gid), g = mnn_load(dy, gid);
  mnn_store(dx, gid, isnan(v) ? v : (v >= 0.0f ? g : mnn_load(slopes, prelu_channel(gid, p)) * g));
}

// dslopes[c] = sum over (n, i) of dy * (x >= 0 ? 0 : x): strided partials, then a threadgroup sum.
template <typename T>
inline void prelu_backward_slopes(device const T* dy, device const T* x, device T* ds, constant MnnPReLUParams& p,
                                  uint c, uint t, uint nt, uint lane, uint sg, uint nsg,
                                  threadgroup float* partial) {
  const uint total = p.outer * p.inner;
  float s = 0.0f;
  for (uint e = t; e < total; e += nt) {
    const uint i = ((e / p.inner) * p.channels + c) * p.inner + e % p.inner;
    const float v = mnn_load(x, i);
    s += v >= 0.0f ? 0.0f : mnn_load(dy, i) * v;  // a NaN x propagates
  }
  s = mnn_threadgroup_sum(s, partial, lane, sg, nsg);
  if (t == 0) mnn_store(ds, c, s);
}

kernel void prelu_forward_float32(device const float* x [[buffer(0)]], device const float* slopes [[buffer(1)]],
                                  device float* y [[buffer(2)]], constant MnnPReLUParams& p [[buffer(3)]],
                                  constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  prelu_forward(x, slopes, y, p, count, gid);
}

kernel void prelu_forward_float16(device const half* x [[buffer(0)]], device const half* slopes [[buffer(1)]],
                                  device half* y [[buffer(2)]], constant MnnPReLUParams& p [[buffer(3)]],
                                  constant uint& count [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  prelu_forward(x, slopes, y, p, count, gid);
}

kernel void prelu_backward_input_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                         device const float* slopes [[buffer(2)]], device float* dx [[buffer(3)]],
                                         constant MnnPReLUParams& p [[buffer(4)]], constant uint& count [[buffer(5)]],
                                         uint gid [[thread_position_in_grid]]) {
  prelu_backward_input(dy, x, slopes, dx, p, count, gid);
}

kernel void prelu_backward_input_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                         device const half* slopes [[buffer(2)]], device half* dx [[buffer(3)]],
                                         constant MnnPReLUParams& p [[buffer(4)]], constant uint& count [[buffer(5)]],
                                         uint gid [[thread_position_in_grid]]) {
  prelu_backward_input(dy, x, slopes, dx, p, count, gid);
}

kernel void prelu_backward_slopes_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                          device float* ds [[buffer(2)]], constant MnnPReLUParams& p [[buffer(3)]],
                                          uint3 tg [[threadgroup_position_in_grid]],
                                          uint t [[thread_index_in_threadgroup]],
                                          uint3 tgsize [[threads_per_threadgroup]],
                                          uint lane [[thread_index_in_simdgroup]],
                                          uint sg [[simdgroup_index_in_threadgroup]],
                                          uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  prelu_backward_slopes(dy, x, ds, p, tg.x, t, tgsize.x, lane, sg, nsg, partial);
}

kernel void prelu_backward_slopes_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                          device half* ds [[buffer(2)]], constant MnnPReLUParams& p [[buffer(3)]],
                                          uint3 tg [[threadgroup_position_in_grid]],
                                          uint t [[thread_index_in_threadgroup]],
                                          uint3 tgsize [[threads_per_threadgroup]],
                                          uint lane [[thread_index_in_simdgroup]],
                                          uint sg [[simdgroup_index_in_threadgroup]],
                                          uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  prelu_backward_slopes(dy, x, ds, p, tg.x, t, tgsize.x, lane, sg, nsg, partial);
}
