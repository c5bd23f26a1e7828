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
// Dilated windows (MnnPool2dDilatedParams: taps dilation apart, pooling_params.h):
//   dilated_max_pool2d_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], int argmax [[buffer(2)]],
//                                                MnnPool2dDilatedParams [[buffer(3)]])   one thread per output
//   dilated_max_pool2d_backward_{float32,float16}(dy [[buffer(0)]], int argmax [[buffer(1)]], dx [[buffer(2)]],
//                                                 MnnPool2dDilatedParams [[buffer(3)]])  one thread per input
//   l2_pool2d_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], MnnPool2dDilatedParams [[buffer(2)]])
//     y = sqrt(sum of x^2 over the window's taps)                                        one thread per output
//   l2_pool2d_backward_{float32,float16}(dy [[buffer(0)]], x [[buffer(1)]], y [[buffer(2)]], dx [[buffer(3)]],
//                                        MnnPool2dDilatedParams [[buffer(4)]])           one thread per input
//     dx = x * (sum over the windows holding it of dy / y, 0 where y == 0), windows in output order
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

// ---------------------------------------------------------------- dilated windows

// Taps [lo, hi) of a dilated window along one axis that land in [0, size); z: the window start.
inline int3 dilated_taps(int o, int stride, int pad, int k, int d, int size) {
  const int start = o * stride - pad;
  const int lo = start >= 0 ? 0 : (-start + d - 1) / d;
  const int hi = size - 1 - start < 0 ? 0 : min(k, (size - 1 - start) / d + 1);
  return int3(lo, max(hi, lo), start);
}

// Output o along one axis whose window has input i as tap k, or -1.
inline int window_of_tap(int i, int k, int stride, int pad, int d, int out) {
  const int t = i + pad - k * d;
  if (t < 0 || t % stride != 0) return -1;
  const int o = t / stride;
  return o < out ? o : -1;
}

template <typename T>
inline void dilated_max_forward(device const T* x, device T* y, device int* argmax,
                                constant MnnPool2dDilatedParams& dp, uint gid) {
  const int H = dp.pool.h, W = dp.pool.w, OH = dp.pool.out_h, OW = dp.pool.out_w;
  const int out_plane = OH * OW;
  if (gid >= (uint)(dp.pool.n * dp.pool.c * out_plane)) return;
  const int plane = gid / out_plane, o = gid % out_plane;
  const int3 r = dilated_taps(o / OW, dp.pool.stride_h, dp.pool.pad_top, dp.pool.kernel_h, dp.dilation_h, H);
  const int3 c = dilated_taps(o % OW, dp.pool.stride_w, dp.pool.pad_left, dp.pool.kernel_w, dp.dilation_w, W);
  device const T* xp = x + plane * H * W;
  float m = 0.0f;
  int arg = -1;
  for (int kh = r.x; kh < r.y; ++kh) {
    const int h = r.z + kh * dp.dilation_h;
    for (int kw = c.x; kw < c.y; ++kw) {
      const int w = c.z + kw * dp.dilation_w;
      const float v = mnn_load(xp, h * W + w);
      if (arg < 0 || (m == m && !(v <= m))) {
        m = v;
        arg = h * W + w;
      }
    }
  }
  mnn_store(y, gid, m);
  argmax[gid] = arg;
}

template <typename T>
inline void dilated_max_backward(device const T* dy, device const int* argmax, device T* dx,
                                 constant MnnPool2dDilatedParams& dp, uint gid) {
  const int H = dp.pool.h, W = dp.pool.w, OH = dp.pool.out_h, OW = dp.pool.out_w;
  const int in_plane = H * W;
  if (gid >= (uint)(dp.pool.n * dp.pool.c * in_plane)) return;
  const int plane = gid / in_plane, i = gid % in_plane;
  const int base = plane * OH * OW;
  float acc = 0.0f;
  // Taps from last to first visit the windows in output order, as the CPU adds them.
  for (int kh = dp.pool.kernel_h - 1; kh >= 0; --kh) {
    const int oh = window_of_tap(i / W, kh, dp.pool.stride_h, dp.pool.pad_top, dp.dilation_h, OH);
    if (oh < 0) continue;
    for (int kw = dp.pool.kernel_w - 1; kw >= 0; --kw) {
      const int ow = window_of_tap(i % W, kw, dp.pool.stride_w, dp.pool.pad_left, dp.dilation_w, OW);
      if (ow < 0) continue;
      const int o = base + oh * OW + ow;
      if (argmax[o] == i) acc += mnn_load(dy, o);
    }
  }
  mnn_store(dx, gid, acc);
}

template <typename T>
inline void l2_forward(device const T* x, device T* y, constant MnnPool2dDilatedParams& dp, uint gid) {
  const int H = dp.pool.h, W = dp.pool.w, OH = dp.pool.out_h, OW = dp.pool.out_w;
  const int out_plane = OH * OW;
  if (gid >= (uint)(dp.pool.n * dp.pool.c * out_plane)) return;
  const int plane = gid / out_plane, o = gid % out_plane;
  const int3 r = dilated_taps(o / OW, dp.pool.stride_h, dp.pool.pad_top, dp.pool.kernel_h, dp.dilation_h, H);
  const int3 c = dilated_taps(o % OW, dp.pool.stride_w, dp.pool.pad_left, dp.pool.kernel_w, dp.dilation_w, W);
  device const T* xp = x + plane * H * W;
  float acc = 0.0f;
  for (int kh = r.x; kh < r.y; ++kh) {
    const int h = r.z + kh * dp.dilation_h;
    for (int kw = c.x; kw < c.y; ++kw) {
      const float v = mnn_load(xp, h * W + c.z + kw * dp.dilation_w);
      acc += v * v;
    }
  }
  mnn_store(y, gid, sqrt(acc));
}

template <typename T>
inline void l2_backward(device const T* dy, device const T* x, device const T* y, device T* dx,
                        constant MnnPool2dDilatedParams& dp, uint gid) {
  const int H = dp.pool.h, W = dp.pool.w, OH = dp.pool.out_h, OW = dp.pool.out_w;
  const int in_plane = H * W;
  if (gid >= (uint)(dp.pool.n * dp.pool.c * in_plane)) return;
  const int plane = gid / in_plane, i = gid % in_plane;
  const int base = plane * OH * OW;
  float acc = 0.0f;
  for (int kh = dp.pool.kernel_h - 1; kh >= 0; --kh) {
    const int oh = window_of_tap(i / W, kh, dp.pool.stride_h, dp.pool.pad_top, dp.dilation_h, OH);
    if (oh < 0) continue;
    for (int kw = dp.pool.kernel_w - 1; kw >= 0; --kw) {
      const int ow = window_of_tap(i % W, kw, dp.pool.stride_w, dp.pool.pad_left, dp.dilation_w, OW);
      if (ow < 0) continue;
      const int o = base + oh * OW + ow;
      const float yo = mnn_load(y, o);
      acc += yo != 0.0f ? mnn_load(dy, o) / yo : 0.0f;
    }
  }
  mnn_store(dx, gid, mnn_load(x, gid) * acc);
}

kernel void dilated_max_pool2d_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                               device int* argmax [[buffer(2)]],
                                               constant MnnPool2dDilatedParams& p [[buffer(3)]],
                                               uint gid [[thread_position_in_grid]]) {
  dilated_max_forward(x, y, argmax, p, gid);
}

kernel void dilated_max_pool2d_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                               device int* argmax [[buffer(2)]],
                                               constant MnnPool2dDilatedParams& p [[buffer(3)]],
                                               uint gid [[thread_position_in_grid]]) {
  dilated_max_forward(x, y, argmax, p, gid);
}

kernel void dilated_max_pool2d_backward_float32(device const float* dy [[buffer(0)]],
                                                device const int* argmax [[buffer(1)]], device float* dx [[buffer(2)]],
                                                constant MnnPool2dDilatedParams& p [[buffer(3)]],
                                                uint gid [[thread_position_in_grid]]) {
  dilated_max_backward(dy, argmax, dx, p, gid);
}

kernel void dilated_max_pool2d_backward_float16(device const half* dy [[buffer(0)]],
                                                device const int* argmax [[buffer(1)]], device half* dx [[buffer(2)]],
                                                constant MnnPool2dDilatedParams& p [[buffer(3)]],
                                                uint gid [[thread_position_in_grid]]) {
  dilated_max_backward(dy, argmax, dx, p, gid);
}

kernel void l2_pool2d_forward_float32(device const float* x [[buffer(0)]], device float* y [[buffer(1)]],
                                      constant MnnPool2dDilatedParams& p [[buffer(2)]],
                                      uint gid [[thread_position_in_grid]]) {
  l2_forward(x, y, p, gid);
}

kernel void l2_pool2d_forward_float16(device const half* x [[buffer(0)]], device half* y [[buffer(1)]],
                                      constant MnnPool2dDilatedParams& p [[buffer(2)]],
                                      uint gid [[thread_position_in_grid]]) {
  l2_forward(x, y, p, gid);
}

kernel void l2_pool2d_backward_float32(device const float* dy [[buffer(0)]], device const float* x [[buffer(1)]],
                                       device const float* y [[buffer(2)]], device float* dx [[buffer(3)]],
                                       constant MnnPool2dDilatedParams& p [[buffer(4)]],
                                       uint gid [[thread_position_in_grid]]) {
  l2_backward(dy, x, y, dx, p, gid);
}

kernel void l2_pool2d_backward_float16(device const half* dy [[buffer(0)]], device const half* x [[buffer(1)]],
                                       device const half* y [[buffer(2)]], device half* dx [[buffer(3)]],
                                       constant MnnPool2dDilatedParams& p [[buffer(4)]],
                                       uint gid [[thread_position_in_grid]]) {
  l2_backward(dy, x, y, dx, p, gid);
}
