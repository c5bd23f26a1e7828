// 2-D max / average pooling over NCHW, forward and backward, float32 and float16 storage
// (float math). Window (oh, ow) covers input rows oh*stride_h - pad_top + [0, kernel_h) and
// columns ow*stride_w - pad_left + [0, kernel_w) (pooling_params.h). Backward kernels gather
// (one thread per input element, windows visited in row-major order, as the CPU's scatter
// adds them), so no atomics are needed and sums are deterministic.
//
// Kernels and buffers (1-D grids rounded up to the threadgroup size):
//   max_pool2d_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], int argmax [[buffer(2)]],
//                                        MnnPool2dParams [[buffer(3)]])        one thread per output
//     argmax = h * w_in + w within the plane; the row-major first maximum wins, a NaN wins.
//   max_pool2d_backward_{float32,float16}(dy [[buffer(0)]], int argmax [[buffer(1)]], dx [[buffer(2)]],
//                                         MnnPool2dParams [[buffer(3)]])       one thread per input
//   avg_pool2d_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], MnnPool2dParams [[buffer(2)]])
//   avg_pool2d_backward_{float32,float16}(dy [[buffer(0)]], dx [[buffer(1)]], MnnPool2dParams [[buffer(2)]])
#include <metal_stdlib>
#include "metal_common.h"
#include "pooling_params.h"
using namespace metal;

// Range of input rows [lo, hi) of window o along one axis, clipped to the input.
inline int2 window_range(int o, int stride, int pad, int kernel, int size) {
  int lo = o * stride - pad;
  return int2(max(lo, 0), min(lo + kernel, size));
}

// Outputs [lo, hi) along one axis whose windows hold input position i.
inline int2 windows_holding(int i, int stride, int pad, int kernel, int out) {
  int lo = i + pad - kernel + 1;
  lo = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  return int2(lo, min((i + pad) / stride + 1, out));
}

inline float avg_divisor(constant MnnPool2dParams& p, int2 rows, int2 cols) {
  return p.count_include_pad ? float(p.kernel_h * p.kernel_w) : float((rows.y - rows.x) * (cols.y - cols.x));
}

template <typename T>
inline void max_pool_forward(device const T* x, device T* y, device int* argmax, constant MnnPool2dParams& p,
                             uint gid) {
  const int out_plane = p.out_h * p.out_w;
  if (gid >= (uint)(p.n * p.c * out_plane)) return;
  const int plane = gid / out_plane, o = gid % out_plane;
  const int2 rows = window_range(o / p.out_w, p.stride_h, p.pad_top, p.kernel_h, p.h);
  const int2 cols = window_range(o % p.out_w, p.stride_w, p.pad_left, p.kernel_w, p.w);
  device const T* xp = x + plane * p.h * p.w;
  float m = 0.0f;
  int arg = -1;
  for (int h = rows.x; h < rows.y; ++h)
    for (int w = cols.x; w < cols.y; ++w) {
      float v = mnn_load(xp, h * p.w + w);
      // v wins when it is the first element, larger, or the first NaN (m == m: no NaN yet).
      if (arg < 0 || (m == m && !(v <= m))) {
        m = v;
        arg = h * p.w + w;
      }
    }
  mnn_store(y, gid, m);
  argmax[gid] = arg;
}

template <typename T>
inline void max_pool_backward(device const T* dy, device const int* argmax, device T* dx,
                              constant MnnPool2dParams& p, uint gid) {
  const int in_plane = p.h * p.w;
  if (gid >= (uint)(p.n * p.c * in_plane)) return;
  const int plane = gid / in_plane, i = gid % in_plane;
  const int2 oh = windows_holding(i / p.w, p.stride_h, p.pad_top, p.kernel_h, p.out_h);
  const int2 ow = windows_holding(i % p.w, p.stride_w, p.pad_left, p.kernel_w, p.out_w);
  const int base = plane * p.out_h * p.out_w;
  float acc = 0.0f;
  for (int r = oh.x; r < oh.y; ++r)
    for (int c = ow.x; c < ow.y; ++c) {
      const int o = base + r * p.out_w + c;
      if (argmax[o] == i) acc += mnn_load(dy, o);
    }
  mnn_store(dx, gid, acc);
}

template <typename T>
inline void avg_pool_forward(device const T* x, device T* y, constant MnnPool2dParams& p, uint gid) {
  const int out_plane = p.out_h * p.out_w;
  if (gid >= (uint)(p.n * p.c * out_plane)) return;
  const int plane = gid / out_plane, o = gid % out_plane;
  const int2 rows = window_range(o / p.out_w, p.stride_h, p.pad_top, p.kernel_h, p.h);
  const int2 cols = window_range(o % p.out_w, p.stride_w, p.pad_left, p.kernel_w, p.w);
  device const T* xp = x + plane * p.h * p.w;
  float acc = 0.0f;
  for (int h = rows.x; h < rows.y; ++h)
    for (int w = cols.x; w < cols.y; ++w) acc += mnn_load(xp, h * p.w + w);
  mnn_store(y, gid, acc / avg_divisor(p, rows, cols));
}

template <typename T>
inline void avg_pool_backward(device const T* dy, device T* dx, constant MnnPool2dParams& p, uint gid) {
  const int in_plane = p.h * p.w;
  if (gid >= (uint)(p.n * p.c * in_plane)) return;
  const int plane = gid / in_plane, i = gid % in_plane;
  const int2 oh = windows_holding(i / p.w, p.stride_h, p.pad_top, p.kernel_h, p.out_h);
  const int2 ow = windows_holding(i % p.w, p.stride_w, p.pad_left, p.kernel_w, p.out_w);
  const int base = plane * p.out_h * p.out_w;
  float acc = 0.0f;
  for (int r = oh.x; r < oh.y; ++r)
    for (int c = ow.x; c < ow.y; ++c) {
      const int2 rows = window_range(r, p.stride_h, p.pad_top, p.kernel_h, p.h);
      const int2 cols = window_range(c, p.stride_w, p.pad_left, p.kernel_w, p.w);
      acc += mnn_load(dy, base + r * p.out_w + c) / avg_divisor(p, rows, cols);
    }
  mnn_store(dx, gid, acc);
}

kernel void max_pool2d_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                       device int* argmax [[buffer(2)]], constant MnnPool2dParams& p [[buffer(3)]],
                                       uint gid [[thread_position_in_grid]]) {
  max_pool_forward(x, y, argmax, p, gid);
}

kernel void max_pool2d_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                       device int* argmax [[buffer(2)]], constant MnnPool2dParams& p [[buffer(3)]],
                                       uint gid [[thread_position_in_grid]]) {
  max_pool_forward(x, y, argmax, p, gid);
}

kernel void max_pool2d_backward_float32(device const float* dy [[buffer(0)]], device const int* argmax [[buffer(1)]],
                                        device float* dx [[buffer(2)]], constant MnnPool2dParams& p [[buffer(3)]],
                                        uint gid [[thread_position_in_grid]]) {
  max_pool_backward(dy, argmax, dx, p, gid);
}

kernel void max_pool2d_backward_float16(device const half* dy [[buffer(0)]], device const int* argmax [[buffer(1)]],
                                        device half* dx [[buffer(2)]], constant MnnPool2dParams& p [[buffer(3)]],
                                        uint gid [[thread_position_in_grid]]) {
  max_pool_backward(dy, argmax, dx, p, gid);
}

kernel void avg_pool2d_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                       constant MnnPool2dParams& p [[buffer(2)]],
                                       uint gid [[thread_position_in_grid]]) {
  avg_pool_forward(x, y, p, gid);
}

kernel void avg_pool2d_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                       constant MnnPool2dParams& p [[buffer(2)]],
                                       uint gid [[thread_position_in_grid]]) {
  avg_pool_forward(x, y, p, gid);
}

kernel void avg_pool2d_backward_float32(device const float* dy [[buffer(0)]], device float* dx [[buffer(1)]],
                                        constant MnnPool2dParams& p [[buffer(2)]],
                                        uint gid [[thread_position_in_grid]]) {
  avg_pool_backward(dy, dx, p, gid);
}

kernel void avg_pool2d_backward_float16(device const half* dy [[buffer(0)]], device half* dx [[buffer(1)]],
                                        constant MnnPool2dParams& p [[buffer(2)]],
                                        uint gid [[thread_position_in_grid]]) {
  avg_pool_backward(dy, dx, p, gid);
}
