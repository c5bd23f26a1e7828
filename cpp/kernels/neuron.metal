// Neuron (activation) kernels, forward and backward, float32 and float16 storage, computed
// in float32 (rounded once on store). The math follows neuron_params.h and
// cpp/metalnn/backend/cpu/neuron.cpp.
//
// Kernels and buffers (one thread per element, 1-D grid of `count` threads rounded up):
//   neuron_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]],
//                                    MnnNeuronParams [[buffer(2)]], uint count [[buffer(3)]])
//   neuron_backward_{float32,float16}(dy [[buffer(0)]], x [[buffer(1)]], dx [[buffer(2)]],
//                                     MnnNeuronParams [[buffer(3)]], uint count [[buffer(4)]])
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
