#include "metalnn/backend/cpu/shape.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Planes per parallel chunk: about 32k elements each.
int64_t grain(int64_t plane) { return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(plane, 1)); }

// Runs fn.template operator()<T>() with T the storage word (float or uint16_t): copies
// move bits, so float16 data is copied exactly.
template <class Fn>
void by_storage(const Tensor& t, Fn&& fn) {
  if (t.dtype() == DType::float16) fn(uint16_t{});
  else fn(float{});
}

// Float rows of a float32 or float16 tensor: float32 in place, float16 widened into scratch.
const float* row_in(const Tensor& t, int64_t offset, int64_t n, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + offset;
  scratch.resize((size_t)n);
  half_to_float_n(t.data<uint16_t>() + offset, scratch.data(), (size_t)n);
  return scratch.data();
}

void row_out(const float* src, const Tensor& t, int64_t offset, int64_t n) {
  if (t.dtype() == DType::float32) std::memcpy(t.data<float>() + offset, src, (size_t)n * sizeof(float));
  else float_to_half_n(src, t.data<uint16_t>() + offset, (size_t)n);
}

// Input index read by window position v (already shifted by the offset) along an axis of
// `size`, or -1 for a zero. Reflect mirrors once (validated: padding < size).
inline int map_index(int v, int size, uint32_t mode) {
  if (v >= 0 && v < size) return v;
  if (mode == MNN_PAD_EDGE) return v < 0 ? 0 : size - 1;
  if (mode == MNN_PAD_REFLECT) return v < 0 ? -v : 2 * (size - 1) - v;
  return -1;
}

// Bilinear source taps along one axis: rows i0, i1 and the weight of i1.
struct Taps {
  std::vector<int> i0, i1;
  std::vector<float> l;
};

Taps bilinear_taps(int in, int out, int scale, bool align) {
  Taps t;
  t.i0.resize((size_t)out);
  t.i1.resize((size_t)out);
  t.l.resize((size_t)out);
  const float ratio = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.f;
  for (int i = 0; i < out; ++i) {
    float src = align ? ratio * (float)i : ((float)i + 0.5f) / (float)scale - 0.5f;
    src = src < 0.f ? 0.f : src;
    int i0 = std::min((int)src, in - 1);
    t.i0[(size_t)i] = i0;
    t.i1[(size_t)i] = std::min(i0 + 1, in - 1);
    t.l[(size_t)i] = src - (float)i0;
  }
  return t;
}

}  // namespace

void upsample_nearest_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  by_storage(x, [&](auto word) {
    using T = decltype(word);
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl)
        for (int h = 0; h < p.h; ++h) {
          const T* src = xs + pl * in + (int64_t)h * p.w;
          T* dst = ys + pl * out + (int64_t)h * p.scale_h * p.out_w;
          for (int w = 0; w < p.w; ++w)
            for (int s = 0; s < p.scale_w; ++s) dst[w * p.scale_w + s] = src[w];
          // The other sh - 1 output rows repeat the first.
          for (int r = 1; r < p.scale_h; ++r) std::memcpy(dst + (int64_t)r * p.out_w, dst, sizeof(T) * p.out_w);
        }
    });
  });
}

void upsample_nearest_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
    std::vector<float> scratch, acc((size_t)p.w);
    for (int64_t pl = b; pl < e; ++pl)
      for (int h = 0; h < p.h; ++h) {
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int r = 0; r < p.scale_h; ++r) {
          const float* row = row_in(dy, pl * out + ((int64_t)h * p.scale_h + r) * p.out_w, p.out_w, scratch);
          for (int w = 0; w < p.w; ++w)
            for (int s = 0; s < p.scale_w; ++s) acc[(size_t)w] += row[w * p.scale_w + s];
        }
        row_out(acc.data(), dx, pl * in + (int64_t)h * p.w, p.w);
      }
  });
}

void upsample_bilinear_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  const Taps rows = bilinear_taps(p.h, p.out_h, p.scale_h, p.mode != 0);
  const Taps cols = bilinear_taps(p.w, p.out_w, p.scale_w, p.mode != 0);
  parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
    std::vector<float> scratch, r0((size_t)p.out_w), r1((size_t)p.out_w), o((size_t)p.out_w);
    for (int64_t pl = b; pl < e; ++pl) {
      const float* xp = row_in(x, pl * in, in, scratch);
      for (int i = 0; i < p.out_h; ++i) {
        const float* a = xp + (int64_t)rows.i0[(size_t)i] * p.w;
        const float* c = xp + (int64_t)rows.i1[(size_t)i] * p.w;
        const float lh = rows.l[(size_t)i];
        for (int j = 0; j < p.out_w; ++j) {
          const int w0 = cols.i0[(size_t)j], w1 = cols.i1[(size_t)j];
          const float lw = cols.l[(size_t)j];
          const float top = (1.f - lw) * a[w0] + lw * a[w1];
          const float bottom = (1.f - lw) * c[w0] + lw * c[w1];
          o[(size_t)j] = (1.f - lh) * top + lh * bottom;
        }
        row_out(o.data(), y, pl * out + (int64_t)i * p.out_w, p.out_w);
      }
    }
  });
}

void upsample_bilinear_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  const Taps rows = bilinear_taps(p.h, p.out_h, p.scale_h, p.mode != 0);
  const Taps cols = bilinear_taps(p.w, p.out_w, p.scale_w, p.mode != 0);
  parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
    std::vector<float> scratch, acc((size_t)in);
    for (int64_t pl = b; pl < e; ++pl) {
      std::fill(acc.begin(), acc.end(), 0.f);
      // Scatter in output order; the plane belongs to this thread alone.
      for (int i = 0; i < p.out_h; ++i) {
        const float* g = row_in(dy, pl * out + (int64_t)i * p.out_w, p.out_w, scratch);
        float* a = acc.data() + (int64_t)rows.i0[(size_t)i] * p.w;
        float* c = acc.data() + (int64_t)rows.i1[(size_t)i] * p.w;
        const float lh = rows.l[(size_t)i];
        for (int j = 0; j < p.out_w; ++j) {
          const int w0 = cols.i0[(size_t)j], w1 = cols.i1[(size_t)j];
          const float lw = cols.l[(size_t)j];
          const float gt = (1.f - lh) * g[j], gb = lh * g[j];
          a[w0] += (1.f - lw) * gt;
          a[w1] += lw * gt;
          c[w0] += (1.f - lw) * gb;
          c[w1] += lw * gb;
        }
      }
      row_out(acc.data(), dx, pl * in, in);
    }
  });
}

void pad_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.out_c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  std::vector<int> cols((size_t)p.out_w);
  for (int j = 0; j < p.out_w; ++j) cols[(size_t)j] = map_index(j - p.off_w, p.w, p.mode);
  // Columns [j0, j1) read input columns j0 - off_w ... contiguously: copied with memcpy.
  const int j0 = std::clamp(p.off_w, 0, p.out_w), j1 = std::clamp(p.off_w + p.w, j0, p.out_w);
  by_storage(x, [&](auto word) {
    using T = decltype(word);
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const int64_t n = pl / p.out_c;
        const int k = map_index((int)(pl % p.out_c) - p.off_c, p.c, p.mode);
        T* yp = ys + pl * out;
        if (k < 0) {
          std::memset(yp, 0, sizeof(T) * (size_t)out);
          continue;
        }
        const T* xp = xs + (n * p.c + k) * in;
        for (int i = 0; i < p.out_h; ++i) {
          T* yr = yp + (int64_t)i * p.out_w;
          const int h = map_index(i - p.off_h, p.h, p.mode);
          if (h < 0) {
            std::memset(yr, 0, sizeof(T) * (size_t)p.out_w);
            continue;
          }
          const T* xr = xp + (int64_t)h * p.w;
          for (int j = 0; j < j0; ++j) yr[j] = cols[(size_t)j] < 0 ? T(0) : xr[cols[(size_t)j]];
          if (j1 > j0) std::memcpy(yr + j0, xr + (j0 - p.off_w), sizeof(T) * (size_t)(j1 - j0));
          for (int j = j1; j < p.out_w; ++j) yr[j] = cols[(size_t)j] < 0 ? T(0) : xr[cols[(size_t)j]];
        }
      }
    });
  });
}

void pad_backward(const Tensor& dy, const Tensor& dx, const MnnShapeParams& p) {
  const int64_t planes = (int64_t)p.n * p.c, in = (int64_t)p.h * p.w, out = (int64_t)p.out_h * p.out_w;
  std::vector<int> cols((size_t)p.out_w), rows((size_t)p.out_h);
  for (int j = 0; j < p.out_w; ++j) cols[(size_t)j] = map_index(j - p.off_w, p.w, p.mode);
  for (int i = 0; i < p.out_h; ++i) rows[(size_t)i] = map_index(i - p.off_h, p.h, p.mode);
  parallel_for(planes, grain(out), [&](int64_t b, int64_t e) {
    std::vector<float> scratch, acc((size_t)in);
    for (int64_t pl = b; pl < e; ++pl) {
      const int64_t n = pl / p.c;
      const int c = (int)(pl % p.c);
      std::fill(acc.begin(), acc.end(), 0.f);
      // Every output channel reading input channel c, in output order.
      for (int k = 0; k < p.out_c; ++k) {
        if (map_index(k - p.off_c, p.c, p.mode) != c) continue;
        for (int i = 0; i < p.out_h; ++i) {
          const int h = rows[(size_t)i];
          if (h < 0) continue;
          const float* g = row_in(dy, (n * p.out_c + k) * out + (int64_t)i * p.out_w, p.out_w, scratch);
          float* a = acc.data() + (int64_t)h * p.w;
          for (int j = 0; j < p.out_w; ++j)
            if (cols[(size_t)j] >= 0) a[cols[(size_t)j]] += g[j];
        }
      }
      row_out(acc.data(), dx, pl * in, in);
    }
  });
}

void concat_forward(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t plane = (int64_t)p.h * p.w, size = (int64_t)p.c * plane;
  const size_t bytes = (size_t)size * dtype_size(x.dtype());
  const char* xs = static_cast<const char*>(x.raw());
  char* ys = static_cast<char*>(y.raw());
  // One image's channels are contiguous in both: one copy per image.
  parallel_for(p.n, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(size, 1)), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n)
      std::memcpy(ys + ((n * p.out_c + p.off_c) * plane) * (int64_t)dtype_size(x.dtype()),
                  xs + (int64_t)bytes * n, bytes);
  });
}

void transpose_matrix(const Tensor& x, const Tensor& y, const MnnShapeParams& p) {
  const int64_t R = p.h, C = p.w;
  const size_t es = dtype_size(x.dtype());
  // A single row or column is laid out the same way transposed.
  if (R == 1 || C == 1) {
    std::memcpy(y.raw(), x.raw(), (size_t)(R * C) * es);
    return;
  }
  // 32 x 32 blocks: a block's 32 source rows and 32 destination rows stay in cache.
  constexpr int64_t B = 32;
  const int64_t block_rows = (R + B - 1) / B, block_cols = (C + B - 1) / B;
  by_storage(x, [&](auto word) {
    using T = decltype(word);
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    parallel_for(block_rows * block_cols, 32, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t r0 = (t / block_cols) * B, c0 = (t % block_cols) * B;
        const int64_t r1 = std::min(R, r0 + B), c1 = std::min(C, c0 + B);
        for (int64_t c = c0; c < c1; ++c) {
          T* dst = ys + c * R;
          for (int64_t r = r0; r < r1; ++r) dst[r] = xs[r * C + c];
        }
      }
    });
  });
}

}  // namespace metalnn::cpu
