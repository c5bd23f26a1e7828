// Resampling / shape kernels on CUDA: the same index math as cpp/kernels/shape.metal.
// Gradients gather (one thread per input element): deterministic, no atomics.
#include "metalnn/backend/cuda/common.cuh"
#include "metalnn/backend/cuda/shape.h"

namespace metalnn::cuda {
namespace {

#define MNN_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ int shape_map(int v, int size, uint32_t mode) {
  if (v >= 0 && v < size) return v;
  if (mode == MNN_PAD_EDGE) return v < 0 ? 0 : size - 1;
  if (mode == MNN_PAD_REFLECT) return v < 0 ? -v : 2 * (size - 1) - v;
  return -1;
}

// Output ranges [lo[k], hi[k]) along one axis reading input index v (1 to 3 of them).
__device__ __forceinline__ int shape_sources(int v, int size, int before, int out, uint32_t mode, int* lo, int* hi) {
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

struct Taps {
  int i0, i1;
  float l;
};

__device__ __forceinline__ Taps bilinear_taps(int i, int in, int out, int scale, uint32_t align) {
  const float ratio = out > 1 ? __fdiv_rn((float)(in - 1), (float)(out - 1)) : 0.f;
  float src = align ? __fmul_rn(ratio, (float)i) : __fsub_rn(__fdiv_rn((float)i + 0.5f, (float)scale), 0.5f);
  src = src < 0.f ? 0.f : src;
  Taps t;
  t.i0 = min((int)src, in - 1);
  t.i1 = min(t.i0 + 1, in - 1);
  t.l = src - (float)t.i0;
  return t;
}

__device__ __forceinline__ float bilinear_weight(Taps t, int v) {
  return (t.i0 == v ? 1.f - t.l : 0.f) + (t.i1 == v ? t.l : 0.f);
}

__device__ __forceinline__ int2 bilinear_candidates(int v, int in, int out, int scale, uint32_t align) {
  if (!align) return make_int2(max(0, (v - 1) * scale), min(out, (v + 2) * scale));
  if (in == 1) return make_int2(0, out);
  const int lo = (v - 1) * (out - 1) / (in - 1) - 1, hi = (v + 1) * (out - 1) / (in - 1) + 2;
  return make_int2(max(lo, 0), min(hi, out));
}

template <class S>
__global__ void nearest_forward_kernel(const S* x, S* y, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.out_h * p.out_w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane), i = o / p.out_w, j = o % p.out_w;
    y[g] = x[pl * p.h * p.w + (int64_t)(i / p.scale_h) * p.w + j / p.scale_w];
  }
}

template <class S>
__global__ void nearest_backward_kernel(const S* dy, S* dx, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.h * p.w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane), h = o / p.w, w = o % p.w;
    const S* d = dy + pl * p.out_h * p.out_w;
    float acc = 0.f;
    for (int r = 0; r < p.scale_h; ++r)
      for (int s = 0; s < p.scale_w; ++s)
        acc += load(d, (int64_t)(h * p.scale_h + r) * p.out_w + w * p.scale_w + s);
    store(dx, g, acc);
  }
}

template <class S>
__global__ void bilinear_forward_kernel(const S* x, S* y, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.out_h * p.out_w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane);
    const Taps r = bilinear_taps(o / p.out_w, p.h, p.out_h, p.scale_h, p.mode);
    const Taps c = bilinear_taps(o % p.out_w, p.w, p.out_w, p.scale_w, p.mode);
    const S* xp = x + pl * p.h * p.w;
    const float top = (1.f - c.l) * load(xp, r.i0 * p.w + c.i0) + c.l * load(xp, r.i0 * p.w + c.i1);
    const float bottom = (1.f - c.l) * load(xp, r.i1 * p.w + c.i0) + c.l * load(xp, r.i1 * p.w + c.i1);
    store(y, g, (1.f - r.l) * top + r.l * bottom);
  }
}

template <class S>
__global__ void bilinear_backward_kernel(const S* dy, S* dx, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.h * p.w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane), h = o / p.w, w = o % p.w;
    const int2 rows = bilinear_candidates(h, p.h, p.out_h, p.scale_h, p.mode);
    const int2 cols = bilinear_candidates(w, p.w, p.out_w, p.scale_w, p.mode);
    const S* d = dy + pl * p.out_h * p.out_w;
    float acc = 0.f;
    for (int i = rows.x; i < rows.y; ++i) {
      const float wr = bilinear_weight(bilinear_taps(i, p.h, p.out_h, p.scale_h, p.mode), h);
      if (wr == 0.f) continue;
      for (int j = cols.x; j < cols.y; ++j) {
        const float wc = bilinear_weight(bilinear_taps(j, p.w, p.out_w, p.scale_w, p.mode), w);
        if (wc != 0.f) acc += wr * wc * load(d, (int64_t)i * p.out_w + j);
      }
    }
    store(dx, g, acc);
  }
}

template <class S>
__global__ void pad_forward_kernel(const S* x, S* y, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.out_h * p.out_w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.out_c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane);
    const int64_t n = pl / p.out_c;
    const int k = shape_map((int)(pl % p.out_c) - p.off_c, p.c, p.mode);
    const int h = shape_map(o / p.out_w - p.off_h, p.h, p.mode);
    const int w = shape_map(o % p.out_w - p.off_w, p.w, p.mode);
    if (k < 0 || h < 0 || w < 0) store(y, g, 0.f);
    else y[g] = x[((n * p.c + k) * p.h + h) * p.w + w];
  }
}

template <class S>
__global__ void pad_backward_kernel(const S* dy, S* dx, MnnShapeParams p) {
  const int64_t plane = (int64_t)p.h * p.w;
  MNN_GRID_LOOP(g, (int64_t)p.n * p.c * plane) {
    const int64_t pl = g / plane;
    const int o = (int)(g % plane);
    const int64_t n = pl / p.c;
    const int c = (int)(pl % p.c), h = o / p.w, w = o % p.w;
    int clo[3], chi[3], hlo[3], hhi[3], wlo[3], whi[3];
    const int nc = shape_sources(c, p.c, p.off_c, p.out_c, p.mode, clo, chi);
    const int nh = shape_sources(h, p.h, p.off_h, p.out_h, p.mode, hlo, hhi);
    const int nw = shape_sources(w, p.w, p.off_w, p.out_w, p.mode, wlo, whi);
    float acc = 0.f;
    for (int a = 0; a < nc; ++a)
      for (int k = clo[a]; k < chi[a]; ++k)
        for (int b = 0; b < nh; ++b)
          for (int i = hlo[b]; i < hhi[b]; ++i) {
            const int64_t row = ((n * p.out_c + k) * p.out_h + i) * p.out_w;
            for (int d = 0; d < nw; ++d)
              for (int j = wlo[d]; j < whi[d]; ++j) acc += load(dy, row + j);
          }
    store(dx, g, acc);
  }
}

template <class S>
__global__ void concat_forward_kernel(const S* x, S* y, MnnShapeParams p) {
  const int64_t image = (int64_t)p.c * p.h * p.w;
  MNN_GRID_LOOP(g, (int64_t)p.n * image) {
    const int64_t n = g / image, e = g % image;
    y[(n * p.out_c + p.off_c) * (int64_t)p.h * p.w + e] = x[g];
  }
}

// y (C, R) = x (R, C) transposed, one 32 x 32 tile per block pass: a warp reads 32 consecutive
// elements of a row of x, the tile turns in shared memory, then a warp writes 32 consecutive
// elements of a row of y. S is the storage word (float, or uint16_t holding a half's bits).
constexpr int kTile = 32, kTileRows = 8;

template <class S>
__global__ void transpose_kernel(const S* x, S* y, int64_t rows, int64_t cols, int64_t tile_cols, int64_t tiles) {
  // One word of padding per row (two for 16-bit words) puts a tile column in 32 different banks.
  constexpr int kPitch = kTile + (sizeof(S) == 2 ? 2 : 1);
  __shared__ S tile[kTile * kPitch];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t r0 = (t / tile_cols) * kTile, c0 = (t % tile_cols) * kTile;
    for (int k = ty; k < kTile; k += kTileRows)
      if (r0 + k < rows && c0 + tx < cols) tile[k * kPitch + tx] = x[(r0 + k) * cols + c0 + tx];
    __syncthreads();
    for (int k = ty; k < kTile; k += kTileRows)
      if (c0 + k < cols && r0 + tx < rows) y[(c0 + k) * rows + r0 + tx] = tile[tx * kPitch + k];
    __syncthreads();  // the next tile overwrites this one
  }
}

// launch_<name>(in, out, p, count, op): `count` threads of the kernel for in's storage type.
#define MNN_SHAPE_LAUNCH(fn, kernel)                                                                          \
  void fn(const Tensor& in, const Tensor& out, const MnnShapeParams& p, int64_t count, const char* op) {      \
    if (!count) return;                                                                                       \
    auto s = current_stream();                                                                                \
    if (in.dtype() == DType::float16)                                                                         \
      kernel<__half><<<grid_for(count), kBlock, 0, s>>>(in.data<__half>(), out.data<__half>(), p);            \
    else                                                                                                      \
      kernel<float><<<grid_for(count), kBlock, 0, s>>>(in.data<float>(), out.data<float>(), p);               \
    check_launch(op);                                                                                         \
  }

MNN_SHAPE_LAUNCH(launch_nearest_forward, nearest_forward_kernel)
MNN_SHAPE_LAUNCH(launch_nearest_backward, nearest_backward_kernel)
MNN_SHAPE_LAUNCH(launch_bilinear_forward, bilinear_forward_kernel)
MNN_SHAPE_LAUNCH(launch_bilinear_backward, bilinear_backward_kernel)
MNN_SHAPE_LAUNCH(launch_pad_forward, pad_forward_kernel)
MNN_SHAPE_LAUNCH(launch_pad_backward, pad_backward_kernel)
MNN_SHAPE_LAUNCH(launch_concat_forward, concat_forward_kernel)

}  // namespace

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  launch_nearest_forward(x, y, p, y.numel(), "upsample_nearest_forward");
}
void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  launch_nearest_backward(dy, dx, p, dx.numel(), "upsample_nearest_backward");
}
void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  launch_bilinear_forward(x, y, p, y.numel(), "upsample_bilinear_forward");
}
void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  launch_bilinear_backward(dy, dx, p, dx.numel(), "upsample_bilinear_backward");
}
void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  launch_pad_forward(x, y, p, y.numel(), "pad_forward");
}
void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  launch_pad_backward(dy, dx, p, dx.numel(), "pad_backward");
}
void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  launch_concat_forward(x, y, p, x.numel(), "concat_forward");
}

void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t rows = p.h, cols = p.w, tile_cols = (cols + kTile - 1) / kTile;
  const int64_t tiles = ((rows + kTile - 1) / kTile) * tile_cols;
  if (!tiles) return;
  const unsigned grid = (unsigned)(tiles < (1 << 20) ? tiles : (1 << 20));
  const dim3 block(kTile, kTileRows);
  auto s = current_stream();
  // Copies move bits: float16 data goes through as 16-bit words.
  if (x.dtype() == DType::float16)
    transpose_kernel<uint16_t><<<grid, block, 0, s>>>(reinterpret_cast<const uint16_t*>(x.raw()),
                                                      reinterpret_cast<uint16_t*>(y.raw()), rows, cols, tile_cols,
                                                      tiles);
  else
    transpose_kernel<float><<<grid, block, 0, s>>>(x.data<float>(), y.data<float>(), rows, cols, tile_cols, tiles);
  check_launch("transpose_matrix");
}

}  // namespace metalnn::cuda
