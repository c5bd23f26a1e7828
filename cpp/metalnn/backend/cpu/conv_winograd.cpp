#include "metalnn/backend/cpu/conv_winograd.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "metalnn/backend/cpu/conv_gemm.h"
#include "metalnn/backend/cpu/conv_storage.h"
#include "metalnn/backend/cpu/conv_winograd_plan.h"
#include "metalnn/backend/cpu/conv_winograd_tiles.h"
#include "metalnn/backend/cpu/conv_winograd_transpose.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

using winograd::BlockPlan;
using winograd::Geometry;
using winograd::Kernels;
using winograd::TileBlock;

float* grow(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

// Per-thread buffers, grown once and reused, so a training step does not allocate.
struct Scratch {
  std::vector<float> V, Mb, stage, in, out, row;
  std::vector<const float*> in_ptr, dy_ptr;
  std::vector<float*> out_ptr;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// The tile rows of image n that block b covers: [lo, hi) (image-relative).
void tile_rows(const TileBlock& b, int64_t n, int64_t& lo, int64_t& hi) {
  lo = std::max(b.first_row, n * b.th) - n * b.th;
  hi = std::min(b.first_row + b.rows, (n + 1) * b.th) - n * b.th;
}

// Copies rows [y0, y1) of the zero-padded, tile-aligned planes (C, ph, pw) of image n of t
// (C, h, w), whose element (y, x) is t's (y - top, x - left) or zero outside: float16 is
// widened here.
void pad_rows(const Tensor& t, int64_t n, int64_t C, int64_t h, int64_t w, int64_t top, int64_t left, int64_t ph,
              int64_t pw, int64_t y0, int64_t y1, float* dst) {
  const bool half = t.dtype() == DType::float16;
  const int64_t x0 = std::max<int64_t>(0, left), x1 = std::min<int64_t>(pw, left + w);  // copied columns
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = y0; y < y1; ++y) {
      float* d = dst + (c * ph + y) * pw;
      const int64_t sy = y - top;
      if (sy < 0 || sy >= h || x1 <= x0) {
        std::fill(d, d + pw, 0.f);
        continue;
      }
      std::fill(d, d + x0, 0.f);
      std::fill(d + x1, d + pw, 0.f);
      const int64_t at = ((n * C + c) * h + sy) * w + (x0 - left);
      if (half) half_to_float_n(t.data<uint16_t>() + at, d + x0, (size_t)(x1 - x0));
      else std::memcpy(d + x0, t.data<float>() + at, sizeof(float) * (size_t)(x1 - x0));
    }
}

// Rows [y0, y1) of image n of t (C, h, w) as channel-last, zero-padded planes (rows, pw, Cp):
// element (y, x, c) = t(c, y - top, x - left), zero outside the image and for c >= C.
// Written in order, gathering across the (cache-resident) channel planes of the image.
void channel_last_rows(const Tensor& t, int64_t n, int64_t C, int64_t h, int64_t w, int64_t top, int64_t left,
                       int64_t pw, int64_t Cp, int64_t y0, int64_t y1, float* dst, std::vector<float>& wide) {
  std::fill(dst + y0 * pw * Cp, dst + y1 * pw * Cp, 0.f);
  const int64_t x0 = std::max<int64_t>(0, left), x1 = std::min<int64_t>(pw, left + w);
  const int64_t r0 = std::max(y0, top), r1 = std::min(y1, top + h);
  if (x1 <= x0 || r1 <= r0) return;
  const int64_t plane = h * w;
  const float* img = block_in(t, n, C * plane, wide);  // float16: widened once
  for (int64_t y = r0; y < r1; ++y) {
    int64_t x = x0;
#if defined(__AVX__)
    // 8 columns x 8 channels at a time, transposed in registers.
    for (; x + 8 <= x1; x += 8) {
      const float* src = img + (y - top) * w + (x - left);
      float* d = dst + (y * pw + x) * Cp;
      int64_t c = 0;
      for (; c + 8 <= C; c += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (c + j) * plane);
        winograd::transpose8(r);
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + j * Cp + c, r[j]);
      }
      for (; c < C; ++c)
        for (int j = 0; j < 8; ++j) d[j * Cp + c] = src[c * plane + j];
    }
#endif
    for (; x < x1; ++x) {
      const float* src = img + (y - top) * w + (x - left);
      float* d = dst + (y * pw + x) * Cp;
      for (int64_t c = 0; c < C; ++c) d[c] = src[c * plane];
    }
  }
}

// Padded input planes of the images block b touches, each row range it reads.
void input_planes(const Tensor& x, const MnnConv2dParams& p, const Geometry& g, const TileBlock& b, Scratch& s) {
  const int64_t n0 = b.first_image(), n1 = b.last_image(), size = g.C * g.in_h() * g.in_w();
  // 8 floats of slack: the input gather reads whole 8-float rows past a narrow window.
  float* buf = grow(s.in, (n1 - n0 + 1) * size + 8);
  s.in_ptr.resize((size_t)(n1 - n0 + 1));
  for (int64_t n = n0; n <= n1; ++n) {
    int64_t lo, hi;
    tile_rows(b, n, lo, hi);
    float* dst = buf + (n - n0) * size;
    pad_rows(x, n, g.C, p.in_height, p.in_width, p.pad_top, p.pad_left, g.in_h(), g.in_w(), lo * g.m,
             hi * g.m + g.r - 1, dst);
    s.in_ptr[(size_t)(n - n0)] = dst;
  }
}

}  // namespace

void winograd_forward(const Tensor& x, const float* w, bool flip, const Epilogue& ep, const Tensor& y,
                      const MnnConv2dParams& p) {
  const Kernels& k = winograd::pick(p, winograd::Direction::forward);
  const Geometry g = winograd::geometry(p, k);
  const int64_t a2 = (int64_t)k.alpha * k.alpha, OH = p.out_height, OW = p.out_width, ys = g.O * OH * OW;
  const int64_t out_size = g.O * g.out_h() * g.out_w();
  const BlockPlan bp(g, p.batch, winograd::target_tiles(winograd::Direction::forward));
  const GemmPlan gp = gemm_plan(g.O, bp.lanes, g.C);
  // Transformed weights, packed once per call as the products' A operands.
  thread_local std::vector<float> packed;
  const int64_t us = winograd::weights_panel_size(g.O, g.C, gp.mr);
  float* upk = grow(packed, a2 * us);
  k.weights(w, g.O, g.C, flip, gp.mr, us, upk);

  parallel_for(bp.blocks, 1, [&](int64_t b0, int64_t b1) {
    Scratch& s = scratch();
    const TileBlock b = bp.block(g, 0);
    float* V = grow(s.V, winograd::transformed_size(k, b, g.C));
    float* Mb = grow(s.Mb, winograd::transformed_size(k, b, g.O));
    float* stage = grow(s.stage, winograd::stage_size(k, b));
    const int64_t vx = b.xi_stride(g.C), mx = b.xi_stride(g.O);
    for (int64_t bi = b0; bi < b1; ++bi) {
      const TileBlock tb = bp.block(g, bi);
      const int64_t n0 = tb.first_image(), n1 = tb.last_image();
      input_planes(x, p, g, tb, s);
      k.input(g, tb, s.in_ptr.data(), V, stage);
      for (int64_t xi = 0; xi < a2; ++xi)
        gemm(gp, {upk + xi * us, 0}, {V + xi * vx, bp.lanes}, Mb + xi * mx, bp.lanes, false, false);
      float* planes = grow(s.out, (n1 - n0 + 1) * out_size);
      s.out_ptr.resize((size_t)(n1 - n0 + 1));
      for (int64_t n = n0; n <= n1; ++n) s.out_ptr[(size_t)(n - n0)] = planes + (n - n0) * out_size;
      k.output(g, tb, Mb, s.out_ptr.data());
      // Clip the tile planes into y, running the epilogue on each channel's rows while in cache.
      for (int64_t n = n0; n <= n1; ++n) {
        int64_t lo, hi;
        tile_rows(tb, n, lo, hi);
        const int64_t r0 = lo * g.m, r1 = std::min(hi * g.m, OH), len = (r1 - r0) * OW;
        const float* src = s.out_ptr[(size_t)(n - n0)];
        for (int64_t o = 0; o < g.O; ++o) {
          const int64_t at = n * ys + o * OH * OW + r0 * OW;
          float* dst = y.dtype() == DType::float32 ? y.data<float>() + at : grow(s.row, len);
          for (int64_t r = r0; r < r1; ++r)
            std::memcpy(dst + (r - r0) * OW, src + (o * g.out_h() + r) * g.out_w(), sizeof(float) * (size_t)OW);
          ep.channel_row(dst, len, at, o);
          if (y.dtype() == DType::float16) float_to_half_n(dst, y.data<uint16_t>() + at, (size_t)len);
        }
      }
    }
  });
}

void winograd_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p) {
  const Kernels& k = winograd::pick(p, winograd::Direction::weight);
  const Geometry g = winograd::geometry(p, k);
  const int64_t a2 = (int64_t)k.alpha * k.alpha, Cp = winograd::channel_pad(g.C), Op = winograd::channel_pad(g.O);
  const int64_t us = a2 * g.O * Cp, in_size = g.in_h() * g.in_w() * Cp, out_size = g.out_h() * g.out_w() * Op;
  // Per block: dU_xi (O x Cp) += dM_xi (O x tiles) * V_xi (tiles x Cp), both read in place;
  // one partial sum per thread, added up at the end.
  const BlockPlan bp(g, p.batch, winograd::target_tiles(winograd::Direction::weight));
  const int64_t T = std::max<int64_t>(1, std::min<int64_t>(num_threads(), bp.blocks));
  thread_local std::vector<float> partial;
  float* part = grow(partial, T * us);
  std::fill(part, part + T * us, 0.f);
  parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
    Scratch& s = scratch();
    const TileBlock b = bp.block(g, 0);  // the largest
    float* V = grow(s.V, a2 * winograd::cl_stride(b, Cp));
    float* dM = grow(s.Mb, a2 * winograd::cl_stride(b, Op));
    for (int64_t t = t0; t < t1; ++t) {
      float* acc = part + t * us;
      for (int64_t bi = bp.blocks * t / T; bi < bp.blocks * (t + 1) / T; ++bi) {
        const TileBlock tb = bp.block(g, bi);
        const int64_t n0 = tb.first_image(), n1 = tb.last_image(), images = n1 - n0 + 1;
        float* in = grow(s.in, images * in_size);
        float* out = grow(s.out, images * out_size);
        s.in_ptr.resize((size_t)images);
        s.dy_ptr.resize((size_t)images);
        for (int64_t n = n0; n <= n1; ++n) {
          int64_t lo, hi;
          tile_rows(tb, n, lo, hi);
          float* xi_planes = in + (n - n0) * in_size;
          float* dy_planes = out + (n - n0) * out_size;
          channel_last_rows(x, n, g.C, p.in_height, p.in_width, p.pad_top, p.pad_left, g.in_w(), Cp, lo * g.m,
                            hi * g.m + g.r - 1, xi_planes, s.row);
          channel_last_rows(dy, n, g.O, p.out_height, p.out_width, 0, 0, g.out_w(), Op, lo * g.m, hi * g.m,
                            dy_planes, s.row);
          s.in_ptr[(size_t)(n - n0)] = xi_planes;
          s.dy_ptr[(size_t)(n - n0)] = dy_planes;
        }
        k.input_cl(g, tb, s.in_ptr.data(), Cp, V);
        k.output_adjoint_cl(g, tb, s.dy_ptr.data(), Op, dM);
        const GemmPlan gp = gemm_plan(g.O, Cp, tb.count());
        const int64_t vx = winograd::cl_stride(tb, Cp), mx = winograd::cl_stride(tb, Op);
        for (int64_t xi = 0; xi < a2; ++xi)
          gemm(gp, {dM + xi * mx, Op}, {V + xi * vx, Cp}, acc + xi * g.O * Cp, Cp, true, false);
      }
    }
  });
  for (int64_t t = 1; t < T; ++t) {
    const float* src = part + t * us;
    for (int64_t i = 0; i < us; ++i) part[i] += src[i];
  }
  if (Cp != g.C)  // drop the padded channels: [xi][o][Cp] -> [xi][o][C]
    for (int64_t row = 0; row < a2 * g.O; ++row) std::memmove(part + row * g.C, part + row * Cp, sizeof(float) * g.C);
  FloatOut out(dw);
  k.weights_adjoint(part, g.O, g.C, out.get());
  out.finish();
}

}  // namespace metalnn::cpu
