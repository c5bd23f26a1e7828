// Element-wise arithmetic, float32 and float16 storage (computed in float, rounded once).
// The graph uses add_forward to sum gradients that reach one tensor from several consumers.
//
// Kernels and buffers (grid: count threads, one element each):
//   add_forward_{float32,float16}(a T [[buffer(0)]], b T [[buffer(1)]], y T [[buffer(2)]],
//                                 uint count [[buffer(3)]])      y = a + b (y may alias a or b)
#include <metal_stdlib>
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
