// Resampling / shape kernels over NCHW, float32 and float16 storage (sums in float, rounded
// once; copies keep the storage bits). Geometry in shape_params.h. Gradients gather (one
// thread per input element), so no atomics are needed and sums are deterministic.
//
// Kernels and buffers (1-D grids rounded up to the threadgroup size; every kernel
// bounds-checks its own count):
//   upsample_nearest_forward_{float32,float16}(x [[buffer(0)]], y [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per output element
//   upsample_nearest_backward_{..}(dy [[buffer(0)]], dx [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per input element: the sum of its (scale_h, scale_w) block
//   upsample_bilinear_forward_{..}(x [[buffer(0)]], y [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per output element; mode 1 = align corners
//   upsample_bilinear_backward_{..}(dy [[buffer(0)]], dx [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per input element: gathers the output positions whose taps hit it
//   pad_forward_{..}(x [[buffer(0)]], y [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       window copy (pad, crop, crop gradient); one thread per output element
//   pad_backward_{..}(dy [[buffer(0)]], dx [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per input element: the sum over every output position reading it
//   concat_forward_{..}(x [[buffer(0)]], y [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       one thread per element of x, written to channel off_c + c of y
//   transpose_matrix_forward_{..}(x [[buffer(0)]], y [[buffer(1)]], MnnShapeParams [[buffer(2)]])
//       y (w, h) = x (h, w) transposed (both directions of the op); explicit groups: threadgroup
//       (32, ty) with ty in [1, 32], grid (ceil(w / 32), ceil(h / 32)) threadgroups; each
//       threadgroup moves one 32 x 32 tile through threadgroup memory (32 * 33 words, declared
//       in the kernels)
#include <metal_stdlib>
#include "metal_common.h"
#include "shape_params.h"
using namespace metal;

// ---- helpers

// Input index read by window position v along an axis of `size` (-1: a zero).
inline int shape_map(int v, int size, uint mode) {
  if (v >= 0 && v < size) return v;
  if (mode == MNN_PAD_EDGE) return v < 0 ? 0 : size - 1;
  if (mode == MNN_PAD_REFLECT) return v < 0 ? -v : 2 * (size - 1) - v;
  return -1;
}

// Output ranges [lo[k], hi[k]) along one axis whose positions read input index v; returns
// how many (1 to 3). `before` is the padding in front, `out` the padded size.
inline int shape_sources(int v, int size, int before, int out, uint mode, thread int* lo, thread int* hi) {
  if (mode == MNN_PAD_EDGE) {
    lo[0] = v == 0 ? 0 : v + before;
    hi[0] = v == size - 1 ? out : v + before + 1;
    return 1;
  }
  lo[0] = v + before;
  hi[0] = v + before + 1;
  int n = 1;
  if (mode == MNN_PAD_REFLECT) {
    if (v >= 1 && v <= before) {
      lo[n] = before - v;
      hi[n] = before - v + 1;
      ++n;
    }
    const int mirror = before + 2 * (size - 1) - v;
    if (v <= size - 2 && mirror < out) {
      lo[n] = mirror;
      hi[n] = mirror + 1;
      ++n;
    }
  }
  return n;
}

// Bilinear taps of output index i along an axis: rows i0, i1 and the weight l of i1.
struct Taps {
  int i0, i1;
  float l;
};

inline Taps bilinear_taps(int i, int in, int out, int scale, uint align) {
  const float ratio = out > 1 ? float(in - 1) / float(out - 1) : 0.0f;
  float src = align != 0 ? ratio * float(i) : (float(i) + 0.5f) / float(scale) - 0.5f;
  src = src < 0.0f ? 0.0f : src;
  Taps t;
  t.i0 = min(int(src), in - 1);
  t.i1 = min(t.i0 + 1, in - 1);
  t.l = src - float(t.i0);
  return t;
}

// Weight of input index v in output index i's interpolation (0 when it is not a tap).
inline float bilinear_weight(Taps t, int v) {
  return (t.i0 == v ? 1.0f - t.l : 0.0f) + (t.i1 == v ? t.l : 0.0f);
}

// Output indices [lo, hi) that can have input index v as a tap (a superset; the weight
// decides): see bilinear_taps for the source positions.
inline int2 bilinear_candidates(int v, int in, int out, int scale, uint align) {
  if (align == 0) return int2(max(0, (v - 1) * scale), min(out, (v + 2) * scale));
  if (in == 1) return int2(0, out);
  const int lo = (v - 1) * (out - 1) / (in - 1) - 1, hi = (v + 1) * (out - 1) / (in - 1) + 2;
  return int2(max(lo, 0), min(hi, out));
}

// ---- kernels bodies

template <typename T>
inline void nearest_forward(device const T* x, device T* y, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.out_h * p.out_w);
  if (gid >= uint(p.n * p.c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const int i = int(o) / p.out_w, j = int(o) % p.out_w;
  y[gid] = x[pl * uint(p.h * p.w) + uint((i / p.scale_h) * p.w + j / p.scale_w)];
}

template <typename T>
inline void nearest_backward(device const T* dy, device T* dx, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.h * p.w);
  if (gid >= uint(p.n * p.c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const int h = int(o) / p.w, w = int(o) % p.w;
  device const T* g = dy + pl * uint(p.out_h * p.out_w);
  float acc = 0.0f;
  for (int r = 0; r < p.scale_h; ++r)
    for (int s = 0; s < p.scale_w; ++s) acc += mnn_load(g, uint((h * p.scale_h + r) * p.out_w + w * p.scale_w + s));
  mnn_store(dx, gid, acc);
}

template <typename T>
inline void bilinear_forward(device const T* x, device T* y, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.out_h * p.out_w);
  if (gid >= uint(p.n * p.c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const Taps r = bilinear_taps(int(o) / p.out_w, p.h, p.out_h, p.scale_h, p.mode);
  const Taps c = bilinear_taps(int(o) % p.out_w, p.w, p.out_w, p.scale_w, p.mode);
  device const T* xp = x + pl * uint(p.h * p.w);
  const float top = (1.0f - c.l) * mnn_load(xp, uint(r.i0 * p.w + c.i0)) + c.l * mnn_load(xp, uint(r.i0 * p.w + c.i1));
  const float bottom =
      (1.0f - c.l) * mnn_load(xp, uint(r.i1 * p.w + c.i0)) + c.l * mnn_load(xp, uint(r.i1 * p.w + c.i1));
  mnn_store(y, gid, (1.0f - r.l) * top + r.l * bottom);
}

template <typename T>
inline void bilinear_backward(device const T* dy, device T* dx, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.h * p.w);
  if (gid >= uint(p.n * p.c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const int h = int(o) / p.w, w = int(o) % p.w;
  const int2 rows = bilinear_candidates(h, p.h, p.out_h, p.scale_h, p.mode);
  const int2 cols = bilinear_candidates(w, p.w, p.out_w, p.scale_w, p.mode);
  device const T* g = dy + pl * uint(p.out_h * p.out_w);
  float acc = 0.0f;
  for (int i = rows.x; i < rows.y; ++i) {
    const float wr = bilinear_weight(bilinear_taps(i, p.h, p.out_h, p.scale_h, p.mode), h);
    if (wr == 0.0f) continue;
    for (int j = cols.x; j < cols.y; ++j) {
      const float wc = bilinear_weight(bilinear_taps(j, p.w, p.out_w, p.scale_w, p.mode), w);
      if (wc != 0.0f) acc += wr * wc * mnn_load(g, uint(i * p.out_w + j));
    }
  }
  mnn_store(dx, gid, acc);
}

template <typename T>
inline void pad_fwd(device const T* x, device T* y, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.out_h * p.out_w);
  if (gid >= uint(p.n * p.out_c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const int n = int(pl) / p.out_c;
  const int k = shape_map(int(pl) % p.out_c - p.off_c, p.c, p.mode);
  const int h = shape_map(int(o) / p.out_w - p.off_h, p.h, p.mode);
  const int w = shape_map(int(o) % p.out_w - p.off_w, p.w, p.mode);
  if (k < 0 || h < 0 || w < 0) {
    y[gid] = T(0);
    return;
  }
  y[gid] = x[uint(((n * p.c + k) * p.h + h) * p.w + w)];
}

template <typename T>
inline void pad_bwd(device const T* dy, device T* dx, constant MnnShapeParams& p, uint gid) {
  const uint plane = uint(p.h * p.w);
  if (gid >= uint(p.n * p.c) * plane) return;
  const uint pl = gid / plane, o = gid % plane;
  const int n = int(pl) / p.c, c = int(pl) % p.c, h = int(o) / p.w, w = int(o) % p.w;
  int clo[3], chi[3], hlo[3], hhi[3], wlo[3], whi[3];
  const int nc = shape_sources(c, p.c, p.off_c, p.out_c, p.mode, clo, chi);
  const int nh = shape_sources(h, p.h, p.off_h, p.out_h, p.mode, hlo, hhi);
  const int nw = shape_sources(w, p.w, p.off_w, p.out_w, p.mode, wlo, whi);
  float acc = 0.0f;
  for (int a = 0; a < nc; ++a)
    for (int k = clo[a]; k < chi[a]; ++k)
      for (int b = 0; b < nh; ++b)
        for (int i = hlo[b]; i < hhi[b]; ++i) {
          const uint row = uint(((n * p.out_c + k) * p.out_h + i) * p.out_w);
          for (int d = 0; d < nw; ++d)
            for (int j = wlo[d]; j < whi[d]; ++j) acc += mnn_load(dy, row + uint(j));
        }
  mnn_store(dx, gid, acc);
}

template <typename T>
inline void concat_fwd(device const T* x, device T* y, constant MnnShapeParams& p, uint gid) {
  const uint image = uint(p.c * p.h * p.w);
  if (gid >= uint(p.n) * image) return;
  const uint n = gid / image, e = gid % image;
  y[(n * uint(p.out_c) + uint(p.off_c)) * uint(p.h * p.w) + e] = x[gid];
}

// One 32 x 32 tile: rows of x read along tid.x (contiguous), the tile transposed in threadgroup
// memory (pitch 33: a tile column spans 33 words), rows of y written along tid.x (contiguous).
#define MNN_TRANSPOSE_TILE 32
#define MNN_TRANSPOSE_PITCH 33

template <typename T>
inline void transpose_tile(device const T* x, device T* y, constant MnnShapeParams& p, uint3 tid, uint3 tg,
                           uint3 tpg, threadgroup T* tile) {
  const int rows = p.h, cols = p.w, tx = int(tid.x);
  const int r0 = int(tg.y) * MNN_TRANSPOSE_TILE, c0 = int(tg.x) * MNN_TRANSPOSE_TILE;
  for (int k = int(tid.y); k < MNN_TRANSPOSE_TILE; k += int(tpg.y))
    if (r0 + k < rows && c0 + tx < cols) tile[k * MNN_TRANSPOSE_PITCH + tx] = x[uint((r0 + k) * cols + c0 + tx)];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int k = int(tid.y); k < MNN_TRANSPOSE_TILE; k += int(tpg.y))
    if (c0 + k < cols && r0 + tx < rows) y[uint((c0 + k) * rows + r0 + tx)] = tile[tx * MNN_TRANSPOSE_PITCH + k];
}

// ---- entry points

kernel void upsample_nearest_forward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                             constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  nearest_forward(in, out, p, gid);
}

kernel void upsample_nearest_forward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                             constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  nearest_forward(in, out, p, gid);
}

kernel void upsample_nearest_backward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                              constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  nearest_backward(in, out, p, gid);
}

kernel void upsample_nearest_backward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                              constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  nearest_backward(in, out, p, gid);
}

kernel void upsample_bilinear_forward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                              constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  bilinear_forward(in, out, p, gid);
}

kernel void upsample_bilinear_forward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                              constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  bilinear_forward(in, out, p, gid);
}

kernel void upsample_bilinear_backward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                               constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  bilinear_backward(in, out, p, gid);
}

kernel void upsample_bilinear_backward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                               constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  bilinear_backward(in, out, p, gid);
}

kernel void pad_forward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  pad_fwd(in, out, p, gid);
}

kernel void pad_forward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  pad_fwd(in, out, p, gid);
}

kernel void pad_backward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                 constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  pad_bwd(in, out, p, gid);
}

kernel void pad_backward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                 constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  pad_bwd(in, out, p, gid);
}

kernel void concat_forward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                   constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  concat_fwd(in, out, p, gid);
}

kernel void concat_forward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                   constant MnnShapeParams& p [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  concat_fwd(in, out, p, gid);
}

kernel void transpose_matrix_forward_float32(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],
                                             constant MnnShapeParams& p [[buffer(2)]],
                                             uint3 tid [[thread_position_in_threadgroup]],
                                             uint3 tg [[threadgroup_position_in_grid]],
                                             uint3 tpg [[threads_per_threadgroup]]) {
  threadgroup float tile[MNN_TRANSPOSE_TILE * MNN_TRANSPOSE_PITCH];
  transpose_tile(in, out, p, tid, tg, tpg, tile);
}

kernel void transpose_matrix_forward_float16(device const half* in [[buffer(0)]], device half* out [[buffer(1)]],
                                             constant MnnShapeParams& p [[buffer(2)]],
                                             uint3 tid [[thread_position_in_threadgroup]],
                                             uint3 tg [[threadgroup_position_in_grid]],
                                             uint3 tpg [[threads_per_threadgroup]]) {
  threadgroup half tile[MNN_TRANSPOSE_TILE * MNN_TRANSPOSE_PITCH];
  transpose_tile(in, out, p, tid, tg, tpg, tile);
}
