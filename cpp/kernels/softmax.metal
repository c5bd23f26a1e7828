// Softmax / log-softmax over channels, forward and backward, float32 and float16 storage
// (float accumulation). The input is viewed as (n, c, s) (softmax_params.h): one threadgroup
// per position (image, j), j < s; its threads stride over c, then reduce with simd_max /
// simd_sum and one partial per simd-group in threadgroup memory. Any threadgroup size up to
// 1024 works (not necessarily a multiple of 32).
//
// Kernels and buffers (grid: n * s threadgroups):
//   softmax_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], MnnSoftmaxParams [[buffer(2)]])
//     y = exp(x - m) / sum_c exp(x - m), or with p.log: (x - m) - log(sum_c exp(x - m)), m = max_c x
//   softmax_backward_{float32,float16}(dy [[buffer(0)]], y [[buffer(1)]], dx [[buffer(2)]],
//                                      MnnSoftmaxParams [[buffer(3)]])
//     dx = y * (dy - sum_c dy * y), or with p.log: dx = dy - exp(y) * sum_c dy
#include <metal_stdlib>
#include "metal_common.h"
#include "softmax_params.h"
using namespace metal;

struct SoftmaxThread {
  uint pos, tid, ntg, lane, sg, nsg;
};

template <typename T>
inline void softmax_forward(device const T* x, device T* y, constant MnnSoftmaxParams& p, threadgroup float* partial,
                            SoftmaxThread t) {
  if (t.pos >= (uint)(p.n * p.s)) return;  // whole threadgroup leaves together
  const uint s = (uint)p.s, c = (uint)p.c;
  const uint base = (t.pos / s) * c * s + t.pos % s;
  float m = -INFINITY;
  for (uint k = t.tid; k < c; k += t.ntg) m = fmax(m, mnn_load(x, base + k * s));
  m = mnn_threadgroup_max(m, partial, t.lane, t.sg, t.nsg);
  float sum = 0.0f;
  for (uint k = t.tid; k < c; k += t.ntg) sum += exp(mnn_load(x, base + k * s) - m);
  // A NaN anywhere in the row makes sum NaN, so the whole row is NaN, as on the CPU.
  sum = mnn_threadgroup_sum(sum, partial, t.lane, t.sg, t.nsg);
  if (p.log) {
    const float ls = log(sum);
    for (uint k = t.tid; k < c; k += t.ntg) mnn_store(y, base + k * s, (mnn_load(x, base + k * s) - m) - ls);
  } else {
    const float inv = 1.0f / sum;
    for (uint k = t.tid; k < c; k += t.ntg) mnn_store(y, base + k * s, exp(mnn_load(x, base + k * s) - m) * inv);
  }
}

template <typename T>
inline void softmax_backward(device const T* dy, device const T* y, device T* dx, constant MnnSoftmaxParams& p,
                             threadgroup float* partial, SoftmaxThread t) {
  if (t.pos >= (uint)(p.n * p.s)) return;
  const uint s = (uint)p.s, c = (uint)p.c;
  const uint base = (t.pos / s) * c * s + t.pos % s;
  float acc = 0.0f;
  for (uint k = t.tid; k < c; k += t.ntg) {
    const uint i = base + k * s;
    acc += p.log ? mnn_load(dy, i) : mnn_load(dy, i) * mnn_load(y, i);
  }
  acc = mnn_threadgroup_sum(acc, partial, t.lane, t.sg, t.nsg);
  for (uint k = t.tid; k < c; k += t.ntg) {
    const uint i = base + k * s;
    const float g = mnn_load(dy, i), yy = mnn_load(y, i);
    mnn_store(dx, i, p.log ? g - exp(yy) * acc : yy * (g - acc));
  }
}

kernel void softmax_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                    constant MnnSoftmaxParams& p [[buffer(2)]],
                                    uint pos [[threadgroup_position_in_grid]],
                                    uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]],
                                    uint lane [[thread_index_in_simdgroup]],
                                    uint sg [[simdgroup_index_in_threadgroup]],
                                    uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  softmax_forward(x, y, p, partial, SoftmaxThread{pos, tid, ntg, lane, sg, nsg});
}

kernel void softmax_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                    constant MnnSoftmaxParams& p [[buffer(2)]],
                                    uint pos [[threadgroup_position_in_grid]],
                                    uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]],
                                    uint lane [[thread_index_in_simdgroup]],
                                    uint sg [[simdgroup_index_in_threadgroup]],
                                    uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  softmax_forward(x, y, p, partial, SoftmaxThread{pos, tid, ntg, lane, sg, nsg});
}

kernel void softmax_backward_float32(device const float* dy [[buffer(0)]], device const float* y [[buffer(1)]],
                                     device float* dx [[buffer(2)]], constant MnnSoftmaxParams& p [[buffer(3)]],
                                     uint pos [[threadgroup_position_in_grid]],
                                     uint tid [[thread_position_in_threadgroup]],
                                     uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
                                     uint sg [[simdgroup_index_in_threadgroup]],
                                     uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  softmax_backward(dy, y, dx, p, partial, SoftmaxThread{pos, tid, ntg, lane, sg, nsg});
}

kernel void softmax_backward_float16(device const half* dy [[buffer(0)]], device const half* y [[buffer(1)]],
                                     device half* dx [[buffer(2)]], constant MnnSoftmaxParams& p [[buffer(3)]],
                                     uint pos [[threadgroup_position_in_grid]],
                                     uint tid [[thread_position_in_threadgroup]],
                                     uint ntg [[threads_per_threadgroup]], uint lane [[thread_index_in_simdgroup]],
                                     uint sg [[simdgroup_index_in_threadgroup]],
                                     uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  softmax_backward(dy, y, dx, p, partial, SoftmaxThread{pos, tid, ntg, lane, sg, nsg});
}
