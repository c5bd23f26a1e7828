// Small kernels that exercise emulator features the op kernels do not: atomics on device and
// threadgroup memory, simd shuffles, vector constructors and swizzles, half arithmetic and
// [[threadgroup(0)]] memory sized by the host. Used by tests/test_metal_emulator.py.
#include <metal_stdlib>
using namespace metal;

// y[0] += sum(x) through a threadgroup atomic per group, then a device atomic.
kernel void atomic_total(device const int* x [[buffer(0)]], device atomic_int* total [[buffer(1)]],
                         constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                         uint tid [[thread_position_in_threadgroup]]) {
  threadgroup atomic_int part;
  if (tid == 0) atomic_store_explicit(&part, 0, memory_order_relaxed);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (gid < count) atomic_fetch_add_explicit(&part, x[gid], memory_order_relaxed);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid == 0) atomic_fetch_add_explicit(total, atomic_load_explicit(&part, memory_order_relaxed), memory_order_relaxed);
}

// Float atomics on device memory: histogram-style accumulation.
kernel void atomic_float_bins(device const float* x [[buffer(0)]], device atomic_float* bins [[buffer(1)]],
                              constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  atomic_fetch_add_explicit(&bins[gid % 3], x[gid], memory_order_relaxed);
}

// Per simd-group sum by a shuffle-down tree; lane 0 writes it.
kernel void shuffle_sum(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                        uint gid [[thread_position_in_grid]], uint lane [[thread_index_in_simdgroup]],
                        uint sg [[simdgroup_index_in_threadgroup]], uint group [[threadgroup_position_in_grid]],
                        uint nsg [[simdgroups_per_threadgroup]]) {
  float v = x[gid];
  for (ushort d = 16; d > 0; d /= 2) v += simd_shuffle_down(v, d);
  if (lane == 0) y[group * nsg + sg] = v;
}

// float4 / half4 constructors and swizzles: y = (x.wzyx * 2 in half) as float.
kernel void swizzle(device const float4* x [[buffer(0)]], device float4* y [[buffer(1)]],
                    uint gid [[thread_position_in_grid]]) {
  float4 v = x[gid];
  half4 h = half4(v.wz, half(v.y), v.x);
  h = h * half(2.0f);
  y[gid] = float4(float2(h.xy), h.z, float(h.w));
}

// Reverses each threadgroup's slice through host-sized threadgroup memory.
kernel void reverse_tg(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                       threadgroup float* tmp [[threadgroup(0)]], uint gid [[thread_position_in_grid]],
                       uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]]) {
  tmp[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  y[gid] = tmp[ntg - 1 - tid];
}
