#include "metalnn/backend/cpu/normalization.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Elements a parallel chunk should cover at least, so small planes are batched together.
constexpr int64_t kWork = 1 << 14;

int64_t grain_for(int64_t per_item) { return std::max<int64_t>(1, kWork / std::max<int64_t>(1, per_item)); }

// n floats of t from `offset`: t's own memory (float32) or a widened copy in `scratch`.
const float* read(const Tensor& t, int64_t offset, int64_t n, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + offset;
  scratch.resize((size_t)n);
  half_to_float_n(t.data<uint16_t>() + offset, scratch.data(), (size_t)n);
  return scratch.data();
}

// Where to compute n output floats: t's memory (float32) or `scratch`, narrowed by commit().
float* target(const Tensor& t, int64_t offset, int64_t n, std::vector<float>& scratch) {
  if (t.dtype() == DType::float32) return t.data<float>() + offset;
  scratch.resize((size_t)n);
  return scratch.data();
}

void commit(const Tensor& t, int64_t offset, int64_t n, const float* buf) {
  if (t.dtype() == DType::float16) float_to_half_n(buf, t.data<uint16_t>() + offset, (size_t)n);
}

// sum of f(i) over [0, n): 8 float lanes (vectorisable without reassociation), folded into
// double every block so long planes keep float32 accuracy.
template <class F>
double lane_sum(int64_t n, F f) {
  constexpr int64_t kBlock = 2048;
  double total = 0.0;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int64_t i = b0;
    for (; i + 8 <= b1; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += f(i + j);
    for (; i < b1; ++i) acc[0] += f(i);
    for (int j = 0; j < 8; ++j) total += acc[j];
  }
  return total;
}

// Two passes over data in cache: mean, then the sum of squared deviations.
void moments(const float* x, int64_t n, double& mean, double& m2) {
  mean = lane_sum(n, [&](int64_t i) { return x[i]; }) / (double)n;
  const float m = (float)mean;
  m2 = lane_sum(n, [&](int64_t i) {
    float d = x[i] - m;
    return d * d;
  });
  // Correct for rounding the mean to float: sum (x - m)^2 = m2 - n (mean - m)^2.
  const double dm = mean - (double)m;
  m2 = std::max(0.0, m2 - (double)n * dm * dm);
}

inline double inv_std_of(double var, float epsilon) { return 1.0 / std::sqrt(var + (double)epsilon); }

}  // namespace

void batch_norm_statistics(const Tensor& x, const Tensor& mean, const Tensor& var, const MnnNormParams& p) {
  const int64_t C = p.c, S = p.s, planes = (int64_t)p.n * C;
  std::vector<double> pm((size_t)planes), pm2((size_t)planes);
  parallel_for(planes, grain_for(S), [&](int64_t b, int64_t e) {
    std::vector<float> scratch;
    for (int64_t q = b; q < e; ++q) moments(read(x, q * S, S, scratch), S, pm[(size_t)q], pm2[(size_t)q]);
  });
  // Planes of equal size combine exactly: M2 = sum M2_q + S * sum (mean_q - mean)^2.
  float* om = mean.data<float>();
  float* ov = var.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    double m = 0.0;
    for (int64_t n = 0; n < p.n; ++n) m += pm[(size_t)(n * C + c)];
    m /= (double)p.n;
    double m2 = 0.0;
    for (int64_t n = 0; n < p.n; ++n) {
      double d = pm[(size_t)(n * C + c)] - m;
      m2 += pm2[(size_t)(n * C + c)] + (double)S * d * d;
    }
    om[c] = (float)m;
    ov[c] = (float)(m2 / ((double)p.n * S));
  }
}

void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, const MnnNormParams& p) {
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();
  const float* m = mean.data<float>();
  const float* v = var.data<float>();
  const float k = p.momentum, unbias = p.count / (p.count - 1.f);
  for (int64_t c = 0; c < p.c; ++c) {
    rm[c] = (1.f - k) * rm[c] + k * m[c];
    rv[c] = (1.f - k) * rv[c] + k * v[c] * unbias;
  }
}

void batch_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                        const Tensor& var, const Tensor& y, const MnnNormParams& p) {
  const int64_t C = p.c, S = p.s;
  std::vector<float> scale((size_t)C);
  const float *g = gamma.data<float>(), *v = var.data<float>(), *m = mean.data<float>(), *bt = beta.data<float>();
  for (int64_t c = 0; c < C; ++c) scale[(size_t)c] = (float)(g[c] * inv_std_of(v[c], p.epsilon));
  parallel_for((int64_t)p.n * C, grain_for(S), [&](int64_t b, int64_t e) {
    std::vector<float> in_s, out_s;
    for (int64_t q = b; q < e; ++q) {
      const int64_t c = q % C;
      const float* xs = read(x, q * S, S, in_s);
      float* ys = target(y, q * S, S, out_s);
      const float mc = m[c], sc = scale[(size_t)c], bc = bt[c];
      for (int64_t i = 0; i < S; ++i) ys[i] = (xs[i] - mc) * sc + bc;
      commit(y, q * S, S, ys);
    }
  });
}

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& var, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  const int64_t C = p.c, S = p.s, planes = (int64_t)p.n * C;
  const float *m = mean.data<float>(), *v = var.data<float>(), *g = gamma.data<float>();
  // Per plane: sum dy and sum dy (x - mean), combined per channel in double.
  std::vector<double> sdy((size_t)planes), sxd((size_t)planes);
  parallel_for(planes, grain_for(S), [&](int64_t b, int64_t e) {
    std::vector<float> s1, s2;
    for (int64_t q = b; q < e; ++q) {
      const float* d = read(dy, q * S, S, s1);
      const float* xs = read(x, q * S, S, s2);
      const float mc = m[q % C];
      sdy[(size_t)q] = lane_sum(S, [&](int64_t i) { return d[i]; });
      sxd[(size_t)q] = lane_sum(S, [&](int64_t i) { return d[i] * (xs[i] - mc); });
    }
  });
  std::vector<float> ka((size_t)C), kb((size_t)C), kc((size_t)C);
  const bool batch = p.flags & MNN_NORM_BATCH_STATISTICS;
  const double count = (double)p.n * S;
  for (int64_t c = 0; c < C; ++c) {
    double a = 0.0, d = 0.0;
    for (int64_t n = 0; n < p.n; ++n) {
      a += sdy[(size_t)(n * C + c)];
      d += sxd[(size_t)(n * C + c)];
    }
    const double is = inv_std_of(v[c], p.epsilon);
    dbeta.data<float>()[c] = (float)a;
    dgamma.data<float>()[c] = (float)(d * is);
    // dx = gamma * is * (dy - sum dy / M - (x - mean) * is^2 * sum dy (x - mean) / M).
    ka[(size_t)c] = (float)(g[c] * is);
    kb[(size_t)c] = batch ? (float)(a / count) : 0.f;
    kc[(size_t)c] = batch ? (float)(is * is * d / count) : 0.f;
  }
  parallel_for(planes, grain_for(S), [&](int64_t b, int64_t e) {
    std::vector<float> s1, s2, s3;
    for (int64_t q = b; q < e; ++q) {
      const int64_t c = q % C;
      const float* d = read(dy, q * S, S, s1);
      const float* xs = read(x, q * S, S, s2);
      float* out = target(dx, q * S, S, s3);
      const float a = ka[(size_t)c], bb = kb[(size_t)c], cc = kc[(size_t)c], mc = m[c];
      for (int64_t i = 0; i < S; ++i) out[i] = a * (d[i] - bb - (xs[i] - mc) * cc);
      commit(dx, q * S, S, out);
    }
  });
}

void group_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& y,
                        const Tensor& mean, const Tensor& inv_std, const MnnNormParams& p) {
  const int64_t C = p.c, S = p.s, G = p.groups, cg = C / G, L = cg * S;
  const float *g = gamma.data<float>(), *bt = beta.data<float>();
  float *om = mean.data<float>(), *oi = inv_std.data<float>();
  // A group (n, g) is one contiguous block of cg planes.
  parallel_for((int64_t)p.n * G, grain_for(L), [&](int64_t b, int64_t e) {
    std::vector<float> in_s, out_s;
    for (int64_t q = b; q < e; ++q) {
      const int64_t base = q * L, c0 = (q % G) * cg;
      const float* xs = read(x, base, L, in_s);
      double mu, m2;
      moments(xs, L, mu, m2);
      const double is = inv_std_of(m2 / (double)L, p.epsilon);
      om[q] = (float)mu;
      oi[q] = (float)is;
      float* ys = target(y, base, L, out_s);
      const float mf = (float)mu;
      for (int64_t k = 0; k < cg; ++k) {
        const float sc = (float)(g[c0 + k] * is), bc = bt[c0 + k];
        const float* xp = xs + k * S;
        float* yp = ys + k * S;
        for (int64_t i = 0; i < S; ++i) yp[i] = (xp[i] - mf) * sc + bc;
      }
      commit(y, base, L, ys);
    }
  });
}

void group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& inv_std, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                         const MnnNormParams& p) {
  const int64_t C = p.c, S = p.s, G = p.groups, cg = C / G, L = cg * S;
  const float* g = gamma.data<float>();
  const float *mean_p = mean.data<float>(), *is_p = inv_std.data<float>();
  // Per (n, c): sum dy and inv_std * sum dy (x - mean), reduced over n for dbeta / dgamma.
  std::vector<double> part_b((size_t)(p.n * C)), part_g((size_t)(p.n * C));
  parallel_for((int64_t)p.n * G, grain_for(L), [&](int64_t b, int64_t e) {
    std::vector<float> s1, s2, s3;
    for (int64_t q = b; q < e; ++q) {
      const int64_t base = q * L, c0 = (q % G) * cg, n = q / G;
      const float* d = read(dy, base, L, s1);
      const float* xs = read(x, base, L, s2);
      const float mu = mean_p[q];
      const double is = is_p[q];
      double sum_g = 0.0, sum_gx = 0.0;  // sum gamma dy, sum gamma dy (x - mean)
      for (int64_t k = 0; k < cg; ++k) {
        const float* dp = d + k * S;
        const float* xp = xs + k * S;
        const double a = lane_sum(S, [&](int64_t i) { return dp[i]; });
        const double xd = lane_sum(S, [&](int64_t i) { return dp[i] * (xp[i] - mu); });
        part_b[(size_t)(n * C + c0 + k)] = a;
        part_g[(size_t)(n * C + c0 + k)] = xd * is;
        sum_g += g[c0 + k] * a;
        sum_gx += g[c0 + k] * xd;
      }
      // dx = is * (gamma dy - mean(gamma dy) - xhat * mean(gamma dy xhat)), xhat = (x - mean) is.
      const float mg = (float)(is * sum_g / (double)L);
      const float mx = (float)(is * is * is * sum_gx / (double)L);
      float* out = target(dx, base, L, s3);
      for (int64_t k = 0; k < cg; ++k) {
        const float a = (float)(is * g[c0 + k]);
        const float* dp = d + k * S;
        const float* xp = xs + k * S;
        float* op = out + k * S;
        for (int64_t i = 0; i < S; ++i) op[i] = a * dp[i] - mg - (xp[i] - mu) * mx;
      }
      commit(dx, base, L, out);
    }
  });
  for (int64_t c = 0; c < C; ++c) {
    double sb = 0.0, sg = 0.0;
    for (int64_t n = 0; n < p.n; ++n) {
      sb += part_b[(size_t)(n * C + c)];
      sg += part_g[(size_t)(n * C + c)];
    }
    dbeta.data<float>()[c] = (float)sb;
    dgamma.data<float>()[c] = (float)sg;
  }
}

namespace {

// Positions per chunk of the cross-channel kernels: every channel of a chunk is gathered.
constexpr int64_t kLrnChunk = 64;

// Gathers channels [0, C) of positions [s0, s0 + len) of sample n into buf[c * len + l].
void gather(const Tensor& t, const MnnNormParams& p, int64_t n, int64_t s0, int64_t len, float* buf) {
  for (int64_t c = 0; c < p.c; ++c) {
    const int64_t off = (n * p.c + c) * p.s + s0;
    if (t.dtype() == DType::float32) std::copy_n(t.data<float>() + off, len, buf + c * len);
    else half_to_float_n(t.data<uint16_t>() + off, buf + c * len, (size_t)len);
  }
}

void scatter(const Tensor& t, const MnnNormParams& p, int64_t n, int64_t s0, int64_t len, const float* buf) {
  for (int64_t c = 0; c < p.c; ++c) {
    const int64_t off = (n * p.c + c) * p.s + s0;
    if (t.dtype() == DType::float32) std::copy_n(buf + c * len, len, t.data<float>() + off);
    else float_to_half_n(buf + c * len, t.data<uint16_t>() + off, (size_t)len);
  }
}

// scale[c] = delta + alpha / size * sum_{j in [c - size/2, c + (size-1)/2]} x_j^2, per position.
void window_scale(const float* xb, float* scale, int64_t C, int64_t len, const MnnNormParams& p) {
  const float k = p.alpha / (float)p.size;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t lo = std::max<int64_t>(0, c - p.size / 2), hi = std::min<int64_t>(C - 1, c + (p.size - 1) / 2);
    float* sc = scale + c * len;
    for (int64_t l = 0; l < len; ++l) sc[l] = 0.f;
    for (int64_t j = lo; j <= hi; ++j) {
      const float* xj = xb + j * len;
      for (int64_t l = 0; l < len; ++l) sc[l] += xj[l] * xj[l];
    }
    for (int64_t l = 0; l < len; ++l) sc[l] = p.delta + k * sc[l];
  }
}

template <class Fn>
void lrn_chunks(const MnnNormParams& p, Fn&& fn) {
  const int64_t chunks = (p.s + kLrnChunk - 1) / kLrnChunk;
  parallel_for((int64_t)p.n * chunks, grain_for((int64_t)p.c * std::min<int64_t>(p.s, kLrnChunk) * p.size),
               [&](int64_t b, int64_t e) {
                 for (int64_t q = b; q < e; ++q) {
                   const int64_t n = q / chunks, s0 = (q % chunks) * kLrnChunk;
                   fn(n, s0, std::min<int64_t>(kLrnChunk, p.s - s0));
                 }
               });
}

}  // namespace

void cross_channel_norm_forward(const Tensor& x, const Tensor& y, const MnnNormParams& p) {
  const int64_t C = p.c;
  lrn_chunks(p, [&](int64_t n, int64_t s0, int64_t len) {
    std::vector<float> xb((size_t)(C * len)), sc((size_t)(C * len));
    gather(x, p, n, s0, len, xb.data());
    window_scale(xb.data(), sc.data(), C, len, p);
    for (int64_t i = 0; i < C * len; ++i) sc[(size_t)i] = xb[(size_t)i] * std::pow(sc[(size_t)i], -p.beta);
    scatter(y, p, n, s0, len, sc.data());
  });
}

void cross_channel_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, const MnnNormParams& p) {
  const int64_t C = p.c;
  const float k = 2.f * p.alpha * p.beta / (float)p.size;
  lrn_chunks(p, [&](int64_t n, int64_t s0, int64_t len) {
    const size_t m = (size_t)(C * len);
    std::vector<float> xb(m), db(m), sc(m), t(m), out(m);
    gather(x, p, n, s0, len, xb.data());
    gather(dy, p, n, s0, len, db.data());
    window_scale(xb.data(), sc.data(), C, len, p);
    // t_c = dy_c x_c scale_c^(-beta-1); out_j = dy_j scale_j^-beta - k x_j sum_{c: j in W(c)} t_c.
    for (size_t i = 0; i < m; ++i) {
      const float r = std::pow(sc[i], -p.beta);
      t[i] = db[i] * xb[i] * r / sc[i];
      out[i] = db[i] * r;
    }
    std::vector<float> acc((size_t)len);
    for (int64_t j = 0; j < C; ++j) {
      const int64_t lo = std::max<int64_t>(0, j - (p.size - 1) / 2), hi = std::min<int64_t>(C - 1, j + p.size / 2);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t c = lo; c <= hi; ++c) {
        const float* tc = t.data() + c * len;
        for (int64_t l = 0; l < len; ++l) acc[(size_t)l] += tc[l];
      }
      float* oj = out.data() + j * len;
      const float* xj = xb.data() + j * len;
      for (int64_t l = 0; l < len; ++l) oj[l] -= k * xj[l] * acc[(size_t)l];
    }
    scatter(dx, p, n, s0, len, out.data());
  });
}

}  // namespace metalnn::cpu
