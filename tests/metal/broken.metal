// Deliberately broken kernels: tests/test_metal_kernels.py expects the emulator to catch each.
// Buffers: x [[buffer(0)]], y [[buffer(1)]], uint count [[buffer(2)]].
#include <metal_stdlib>
using namespace metal;

// Sum of each threadgroup's values into y[group] -- correct, as the control.
kernel void sum_ok(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                   constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                   uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]],
                   uint group [[threadgroup_position_in_grid]]) {
  threadgroup float v[256];
  v[tid] = gid < count ? x[gid] : 0.0f;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid == 0) {
    float s = 0.0f;
    for (uint i = 0; i < ntg; ++i) s += v[i];
    y[group] = s;
  }
}

// The same without the barrier: thread 0 may read slots the others have not written yet.
kernel void sum_missing_barrier(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                                uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]],
                                uint group [[threadgroup_position_in_grid]]) {
  threadgroup float v[256];
  v[tid] = gid < count ? x[gid] : 0.0f;
  if (tid == 0) {
    float s = 0.0f;
    for (uint i = 0; i < ntg; ++i) s += v[i];
    y[group] = s;
  }
}

// Tree reduction whose loop barrier is missing: results depend on the thread order.
kernel void tree_missing_barrier(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                 constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                                 uint tid [[thread_position_in_threadgroup]], uint ntg [[threads_per_threadgroup]],
                                 uint group [[threadgroup_position_in_grid]]) {
  threadgroup float v[256];
  v[tid] = gid < count ? x[gid] : 0.0f;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint h = ntg / 2; h > 0; h /= 2) {
    if (tid < h) v[tid] += v[tid + h];
  }
  if (tid == 0) y[group] = v[0];
}

// No bounds check: the rounded-up grid writes past the end of y.
kernel void copy_out_of_range(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                              constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  y[gid] = 2.0f * x[gid];
}

// Off by one downwards: thread 0 writes y[-1].
kernel void copy_negative_index(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  if (gid >= count) return;
  y[int(gid) - 1] = x[gid];
}

// A barrier only half the threadgroup reaches.
kernel void barrier_in_branch(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                              constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                              uint tid [[thread_position_in_threadgroup]]) {
  threadgroup float v[256];
  v[tid] = x[gid];
  if (tid < 16) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    y[gid] = v[tid ^ 1];
  }
}

// Threads past the end return before the barrier the others wait at.
kernel void barrier_after_return(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                 constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                                 uint tid [[thread_position_in_threadgroup]]) {
  threadgroup float v[256];
  if (gid >= count) return;
  v[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  y[gid] = v[tid];
}

// Two different barriers in the two sides of a branch.
kernel void barriers_differ(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                            constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                            uint tid [[thread_position_in_threadgroup]]) {
  if (tid % 2 == 0) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  } else {
    threadgroup_barrier(mem_flags::mem_device);
  }
  if (gid < count) y[gid] = x[gid];
}

// 40 KiB of threadgroup memory: over the 32 KiB limit.
kernel void too_much_threadgroup_memory(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                        constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                                        uint tid [[thread_position_in_threadgroup]]) {
  threadgroup float big[10240];
  big[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (gid < count) y[gid] = big[tid];
}

// Reads threadgroup memory nobody wrote.
kernel void read_unwritten(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                           constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                           uint tid [[thread_position_in_threadgroup]]) {
  threadgroup float v[256];
  if (tid > 0) v[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (gid < count) y[gid] = v[tid];
}

// simd_sum where some lanes of the simd-group wait at a barrier instead.
kernel void simd_in_branch(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                           constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]],
                           uint lane [[thread_index_in_simdgroup]]) {
  float s = 0.0f;
  if (lane < 8) s = simd_sum(x[gid]);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (gid < count) y[gid] = s;
}

// Compiles as plain C++, but strict mode (distinct address spaces) must reject it.
kernel void address_space_mix(device float* x [[buffer(0)]], device float* y [[buffer(1)]],
                              constant uint& count [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  thread float* p = x;
  if (gid < count) y[gid] = p[gid];
}
