// Element-wise arithmetic with broadcasting, float32 and float16 storage (computed in float,
// rounded once). Shapes, strides and gradient terms: arithmetic_params.h. The graph uses
// add_forward to sum gradients that reach one tensor from several consumers.
//
// Kernels and buffers:
//   add_forward_{float32,float16}(a T [[buffer(0)]], b T [[buffer(1)]], y T [[buffer(2)]],
//                                 uint count [[buffer(3)]])      y = a + b, one shape (y may alias a or b)
//       grid: count threads, one element each
//   arithmetic_forward_{..}(a [[buffer(0)]], b [[buffer(1)]], y [[buffer(2)]], MnnArithmeticParams [[buffer(3)]])
//       y = a (op) b with broadcasting; grid: count threads, one output element each
//   arithmetic_backward_{..}(dy [[buffer(0)]], a [[buffer(1)]], b [[buffer(2)]], g [[buffer(3)]],
//                            MnnArithmeticParams [[buffer(4)]])
//       one thread per gradient element, summing its reduce_count terms in order
//   arithmetic_backward_reduce_{..}(same buffers)
//       one threadgroup per gradient element (any width up to 1024): threads stride over the
//       reduce_count terms, then a simd-group + threadgroup sum
// Add and subtract gradients never read a or b (the host may bind dy in their place).
#include <metal_stdlib>
#include "arithmetic_params.h"
#include "metal_common.h"
using namespace metal;

kernel void add_forward_float32(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                                device float* y [[buffer(2)]], constant uint& count [[buffer(3)]],
                                uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  y[gid] = a[gid] + b[gid];
}

kernel void add_forward_float16(device const half* a [[buffer(0)]], device const half* b [[buffer(1)]],
                                device half* y [[buffer(2)]], constant uint& count [[buffer(3)]],
                                uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  mnn_store(y, gid, mnn_load(a, gid) + mnn_load(b, gid));
}

// ---- helpers

inline float arith_apply(uint op, float a, float b) {
  switch (op) {
    case MNN_ARITH_ADD: return a + b;
    case MNN_ARITH_SUBTRACT: return a - b;
    case MNN_ARITH_MULTIPLY: return a * b;
    default: return a / b;
  }
}

// dy times the derivative of a (op) b with respect to the operand (0 = a, 1 = b).
inline float arith_term(uint op, uint operand, float g, float a, float b) {
  switch (op) {
    case MNN_ARITH_ADD: return g;
    case MNN_ARITH_SUBTRACT: return operand == 0 ? g : -g;
    case MNN_ARITH_MULTIPLY: return operand == 0 ? g * b : g * a;
    default: return operand == 0 ? g / b : -(g * a) / (b * b);
  }
}

// The output coordinate of gradient element t and term r: kept dimensions (g_stride != 0)
// come from t, reduced ones (g_stride == 0) from r, innermost fastest.
inline void arith_coord(constant MnnArithmeticParams& p, uint t, uint r, thread int* d) {
  for (int k = 3; k >= 0; --k) {
    if (p.g_stride[k] != 0) {
      d[k] = int(t / uint(p.g_stride[k])) % p.out[k];
    } else {
      d[k] = int(r % uint(p.out[k]));
      r /= uint(p.out[k]);
    }
  }
}

template <typename T>
inline float arith_grad_term(device const T* dy, device const T* a, device const T* b,
                             constant MnnArithmeticParams& p, uint t, uint r) {
  int d[4];
  arith_coord(p, t, r, d);
  const uint o = uint(((d[0] * p.out[1] + d[1]) * p.out[2] + d[2]) * p.out[3] + d[3]);
  float av = 0.0f, bv = 0.0f;
  if (p.op >= MNN_ARITH_MULTIPLY) {
    av = mnn_load(a, uint(d[0] * p.a_stride[0] + d[1] * p.a_stride[1] + d[2] * p.a_stride[2] + d[3] * p.a_stride[3]));
    bv = mnn_load(b, uint(d[0] * p.b_stride[0] + d[1] * p.b_stride[1] + d[2] * p.b_stride[2] + d[3] * p.b_stride[3]));
  }
  return arith_term(p.op, p.operand, mnn_load(dy, o), av, bv);
}

// ---- bodies

template <typename T>
inline void arith_forward(device const T* a, device const T* b, device T* y, constant MnnArithmeticParams& p,
                          uint gid) {
  if (gid >= p.count) return;
  uint rest = gid;
  int ia = 0, ib = 0;
  for (int k = 3; k >= 0; --k) {
    const int c = int(rest % uint(p.out[k]));
    rest /= uint(p.out[k]);
    ia += c * p.a_stride[k];
    ib += c * p.b_stride[k];
  }
  mnn_store(y, gid, arith_apply(p.op, mnn_load(a, uint(ia)), mnn_load(b, uint(ib))));
}

template <typename T>
inline void arith_backward(device const T* dy, device const T* a, device const T* b, device T* g,
                           constant MnnArithmeticParams& p, uint gid) {
  if (gid >= p.g_count) return;
  float acc = 0.0f;
  for (uint r = 0; r < p.reduce_count; ++r) acc += arith_grad_term(dy, a, b, p, gid, r);
  mnn_store(g, gid, acc);
}

template <typename T>
inline void arith_backward_reduce(device const T* dy, device const T* a, device const T* b, device T* g,
                                  constant MnnArithmeticParams& p, threadgroup float* partial, uint t, uint tid,
                                  uint ntg, uint lane, uint sg, uint nsg) {
  // Every thread reaches the barriers inside the sum: no early return before it.
  float acc = 0.0f;
  if (t < p.g_count)
    for (uint r = tid; r < p.reduce_count; r += ntg) acc += arith_grad_term(dy, a, b, p, t, r);
  const float total = mnn_threadgroup_sum(acc, partial, lane, sg, nsg);
  if (tid == 0 && t < p.g_count) mnn_store(g, t, total);
}

// ---- entry points

kernel void arithmetic_forward_float32(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                                       device float* y [[buffer(2)]], constant MnnArithmeticParams& p [[buffer(3)]],
                                       uint gid [[thread_position_in_grid]]) {
  arith_forward(a, b, y, p, gid);
}

kernel void arithmetic_forward_float16(device const half* a [[buffer(0)]], device const half* b [[buffer(1)]],
                                       device half* y [[buffer(2)]], constant MnnArithmeticParams& p [[buffer(3)]],
                                       uint gid [[thread_position_in_grid]]) {
  arith_forward(a, b, y, p, gid);
}

kernel void arithmetic_backward_float32(device const float* dy [[buffer(0)]], device const float* a [[buffer(1)]],
                                        device const float* b [[buffer(2)]], device float* g [[buffer(3)]],
                                        constant MnnArithmeticParams& p [[buffer(4)]],
                                        uint gid [[thread_position_in_grid]]) {
  arith_backward(dy, a, b, g, p, gid);
}

kernel void arithmetic_backward_float16(device const half* dy [[buffer(0)]], device const half* a [[buffer(1)]],
                                        device const half* b [[buffer(2)]], device half* g [[buffer(3)]],
                                        constant MnnArithmeticParams& p [[buffer(4)]],
                                        uint gid [[thread_position_in_grid]]) {
  arith_backward(dy, a, b, g, p, gid);
}

kernel void arithmetic_backward_reduce_float32(device const float* dy [[buffer(0)]],
                                               device const float* a [[buffer(1)]],
                                               device const float* b [[buffer(2)]], device float* g [[buffer(3)]],
                                               constant MnnArithmeticParams& p [[buffer(4)]],
                                               uint t [[threadgroup_position_in_grid]],
                                               uint tid [[thread_position_in_threadgroup]],
                                               uint ntg [[threads_per_threadgroup]],
                                               uint lane [[thread_index_in_simdgroup]],
                                               uint sg [[simdgroup_index_in_threadgroup]],
                                               uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  arith_backward_reduce(dy, a, b, g, p, partial, t, tid, ntg, lane, sg, nsg);
}

kernel void arithmetic_backward_reduce_float16(device const half* dy [[buffer(0)]],
                                               device const half* a [[buffer(1)]],
                                               device const half* b [[buffer(2)]], device half* g [[buffer(3)]],
                                               constant MnnArithmeticParams& p [[buffer(4)]],
                                               uint t [[threadgroup_position_in_grid]],
                                               uint tid [[thread_position_in_threadgroup]],
                                               uint ntg [[threads_per_threadgroup]],
                                               uint lane [[thread_index_in_simdgroup]],
                                               uint sg [[simdgroup_index_in_threadgroup]],
                                               uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  arith_backward_reduce(dy, a, b, g, p, partial, t, tid, ntg, lane, sg, nsg);
}
