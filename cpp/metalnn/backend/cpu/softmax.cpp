#include "metalnn/backend/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {

namespace {

// Float vectors (GCC/Clang vector extensions; AVX-512, AVX, SSE or NEON): the library expf does
// not vectorise, and float sums and maxima only do when written lane-wise.
constexpr int kLanes = 16;  // 512-bit; split into 2x256 or 4x128 where the CPU is narrower
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));

inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float f) { return vf{} + f; }
inline vf select(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

// exp(x) to about 1 ulp (Cody-Waite reduction and the Cephes expf polynomial).
// 2^k is applied in two halves so k in [-150, 128] neither overflows the exponent
// field nor flushes results that are representable; NaN passes through.
inline vf expv(vf x) {
  vi nan = x != x;
  vf xc = select(x < splat(-104.f), splat(-104.f), x);
  xc = select(xc > splat(89.f), splat(89.f), xc);
  xc = select(nan, vf{}, xc);
  vf k = (xc * 1.44269504f + 12582912.f) - 12582912.f;  // round to nearest integer
  vf r = xc - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  vf q = splat(1.9875691500e-4f);
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  vf y = q * r * r + r + 1.f;
  vi ki = __builtin_convertvector(k, vi);
  vi k1 = ki >> 1, k2 = ki - k1;
  y = y * (vf)((k1 + 127) << 23) * (vf)((k2 + 127) << 23);
  return select(nan, x, y);
}

}  // namespace

void exp_n(const float* in, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) storev(out + i, expv(loadv(in + i)));
  if (i < n) {  // the tail through a padded vector, so every element gets the same rounding
    float t[kLanes] = {};
    std::memcpy(t, in + i, sizeof(float) * (size_t)(n - i));
    storev(t, expv(loadv(t)));
    std::memcpy(out + i, t, sizeof(float) * (size_t)(n - i));
  }
}

namespace {

// max of x[0, n); a NaN may or may not win, which is fine: exp(x - m) turns it NaN anyway.
float max_n(const float* x, int64_t n) {
  float m = x[0];
  int64_t i = 0;
  if (n >= kLanes) {
    vf mv = loadv(x);
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      vf v = loadv(x + i);
      mv = select(v > mv, v, mv);
    }
    for (int j = 0; j < kLanes; ++j) m = mv[j] > m ? mv[j] : m;
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum_k exp(x[k] - m), storing each term in out when out is not null.
float exp_sum_n(const float* x, float m, float* out, int64_t n) {
  vf acc = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    vf e = expv(loadv(x + i) - m);
    if (out) storev(out + i, e);
    acc += e;
  }
  float s = 0.f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  if (i < n) {
    float t[kLanes] = {};
    for (int64_t j = i; j < n; ++j) t[j - i] = x[j] - m;
    storev(t, expv(loadv(t)));
    for (int64_t j = i; j < n; ++j) {
      if (out) out[j] = t[j - i];
      s += t[j - i];
    }
  }
  return s;
}

float sum_n(const float* x, int64_t n) {
  vf acc = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc += loadv(x + i);
  float s = 0.f;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  for (; i < n; ++i) s += x[i];
  return s;
}

}  // namespace

void softmax_rows(const float* x, float* y, int64_t n, int c, bool log) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    const float m = max_n(xr, c);
    const float s = exp_sum_n(xr, m, log ? nullptr : yr, c);
    if (log) {
      const float ls = std::log(s);
      for (int k = 0; k < c; ++k) yr[k] = (xr[k] - m) - ls;
    } else {
      const float inv = 1.f / s;
      for (int k = 0; k < c; ++k) yr[k] *= inv;
    }
  }
}

void softmax_cols(const float* x, int64_t ldx, float* y, int64_t ldy, int c, int n, bool log, float* work) {
  float* __restrict m = work;
  float* __restrict s = work + n;
  for (int j = 0; j < n; ++j) {
    m[j] = x[j];
    s[j] = 0.f;
  }
  for (int k = 1; k < c; ++k) {
    const float* __restrict xr = x + k * ldx;
    for (int j = 0; j < n; ++j) m[j] = xr[j] > m[j] ? xr[j] : m[j];
  }
  for (int k = 0; k < c; ++k) {
    const float* __restrict xr = x + k * ldx;
    float* __restrict yr = y + k * ldy;
    for (int j = 0; j < n; ++j) yr[j] = xr[j] - m[j];
    exp_n(yr, yr, n);
    for (int j = 0; j < n; ++j) s[j] += yr[j];
  }
  if (log) {
    for (int j = 0; j < n; ++j) s[j] = std::log(s[j]);
    for (int k = 0; k < c; ++k) {
      const float* __restrict xr = x + k * ldx;
      float* __restrict yr = y + k * ldy;
      for (int j = 0; j < n; ++j) yr[j] = (xr[j] - m[j]) - s[j];
    }
  } else {
    for (int j = 0; j < n; ++j) s[j] = 1.f / s[j];
    for (int k = 0; k < c; ++k) {
      float* __restrict yr = y + k * ldy;
      for (int j = 0; j < n; ++j) yr[j] *= s[j];
    }
  }
}

namespace {

constexpr int64_t kColBlock = 256;  // positions per column block (fits L1 for small c)

size_t block_offset(const MnnSoftmaxParams& p, const SoftmaxBlock& b) {
  if (b.rows()) return (size_t)(b.first * p.c);
  return (size_t)(b.image * p.c * (int64_t)p.s + b.first);
}

}  // namespace

void for_each_softmax_block(const MnnSoftmaxParams& p, const std::function<void(const SoftmaxBlock&)>& fn) {
  if (p.s == 1) {
    // Rows in blocks of about 16k values: parallel for large batches, one call for MNIST.
    int64_t rows_per = std::max<int64_t>(1, (1 << 14) / std::max(p.c, 1));
    int64_t blocks = (p.n + rows_per - 1) / rows_per;
    parallel_for(blocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int64_t first = i * rows_per;
        fn(SoftmaxBlock{-1, first, std::min<int64_t>(rows_per, p.n - first)});
      }
    });
    return;
  }
  int64_t per_image = (p.s + kColBlock - 1) / kColBlock;
  // Enough blocks per chunk that a chunk holds ~16k values.
  int64_t grain = std::max<int64_t>(1, (1 << 14) / (kColBlock * std::max(p.c, 1)));
  parallel_for(p.n * per_image, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t image = i / per_image, first = (i % per_image) * kColBlock;
      fn(SoftmaxBlock{image, first, std::min<int64_t>(kColBlock, p.s - first)});
    }
  });
}

FloatBlock block_in(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, std::vector<float>& scratch) {
  size_t off = block_offset(p, b);
  if (t.dtype() == DType::float32) return {t.data<float>() + off, b.rows() ? 0 : (int64_t)p.s};
  scratch.resize((size_t)(b.count * p.c));
  const uint16_t* src = t.data<uint16_t>() + off;
  if (b.rows()) {
    half_to_float_n(src, scratch.data(), scratch.size());
    return {scratch.data(), 0};
  }
  for (int k = 0; k < p.c; ++k)
    half_to_float_n(src + (int64_t)k * p.s, scratch.data() + k * b.count, (size_t)b.count);
  return {scratch.data(), b.count};
}

FloatBlock block_out(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return {t.data<float>() + block_offset(p, b), b.rows() ? 0 : (int64_t)p.s};
  scratch.resize((size_t)(b.count * p.c));
  return {scratch.data(), b.rows() ? 0 : b.count};
}

void block_commit(const Tensor& t, const MnnSoftmaxParams& p, const SoftmaxBlock& b, const FloatBlock& f) {
  if (t.dtype() == DType::float32) return;
  uint16_t* dst = t.data<uint16_t>() + block_offset(p, b);
  if (b.rows()) {
    float_to_half_n(f.data, dst, (size_t)(b.count * p.c));
    return;
  }
  for (int k = 0; k < p.c; ++k) float_to_half_n(f.data + k * f.ld, dst + (int64_t)k * p.s, (size_t)b.count);
}

void softmax_forward(const Tensor& x, const Tensor& y, const MnnSoftmaxParams& p) {
  for_each_softmax_block(p, [&](const SoftmaxBlock& b) {
    thread_local std::vector<float> sx, sy, work;
    FloatBlock in = block_in(x, p, b, sx), out = block_out(y, p, b, sy);
    if (b.rows()) {
      softmax_rows(in.data, out.data, b.count, p.c, p.log);
    } else {
      work.resize((size_t)(2 * b.count));
      softmax_cols(in.data, in.ld, out.data, out.ld, p.c, (int)b.count, p.log, work.data());
    }
    block_commit(y, p, b, out);
  });
}

namespace {

// dx = y * (dy - sum_c dy * y), or for log-softmax dx = dy - exp(y) * sum_c dy.
void backward_rows(const float* dy, const float* y, float* dx, int64_t n, int c, bool log) {
  for (int64_t r = 0; r < n; ++r) {
    const float* g = dy + r * c;
    const float* yr = y + r * c;
    float* out = dx + r * c;
    float s = 0.f;
    if (log) {
      s = sum_n(g, c);
      exp_n(yr, out, c);
      for (int k = 0; k < c; ++k) out[k] = g[k] - out[k] * s;
    } else {
      for (int k = 0; k < c; ++k) out[k] = g[k] * yr[k];
      s = sum_n(out, c);
      for (int k = 0; k < c; ++k) out[k] = yr[k] * (g[k] - s);
    }
  }
}

void backward_cols(const float* dy, int64_t ldg, const float* y, int64_t ldy, float* dx, int64_t ldx, int c, int n,
                   bool log, float* s) {
  for (int j = 0; j < n; ++j) s[j] = 0.f;
  for (int k = 0; k < c; ++k) {
    const float* __restrict g = dy + k * ldg;
    const float* __restrict yr = y + k * ldy;
    if (log)
      for (int j = 0; j < n; ++j) s[j] += g[j];
    else
      for (int j = 0; j < n; ++j) s[j] += g[j] * yr[j];
  }
  for (int k = 0; k < c; ++k) {
    const float* __restrict g = dy + k * ldg;
    const float* __restrict yr = y + k * ldy;
    float* __restrict out = dx + k * ldx;
    if (log) {
      exp_n(yr, out, n);
      for (int j = 0; j < n; ++j) out[j] = g[j] - out[j] * s[j];
    } else {
      for (int j = 0; j < n; ++j) out[j] = yr[j] * (g[j] - s[j]);
    }
  }
}

}  // namespace

void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx, const MnnSoftmaxParams& p) {
  for_each_softmax_block(p, [&](const SoftmaxBlock& b) {
    thread_local std::vector<float> sg, sy, sx, work;
    FloatBlock g = block_in(dy, p, b, sg), yy = block_in(y, p, b, sy), out = block_out(dx, p, b, sx);
    if (b.rows()) {
      backward_rows(g.data, yy.data, out.data, b.count, p.c, p.log);
    } else {
      work.resize((size_t)b.count);
      backward_cols(g.data, g.ld, yy.data, yy.ld, out.data, out.ld, p.c, (int)b.count, p.log, work.data());
    }
    block_commit(dx, p, b, out);
  });
}

}  // namespace metalnn::cpu
