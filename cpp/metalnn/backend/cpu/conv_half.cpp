#include "metalnn/backend/cpu/conv_half.h"

#include <vector>

#include "metalnn/backend/cpu/conv_patches.h"
#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {

void conv2d_forward_half(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                         const MnnConv2dParams& p, const Epilogue& ep) {
  // Widening half to float is exact, so the loops read float copies.
  const std::vector<float> xf = to_float_vector(x), wf = to_float_vector(w);
  const std::vector<float> bf = p.has_bias ? to_float_vector(bias) : std::vector<float>();
  const ConvDims d(p);
  uint16_t* out = y.data<uint16_t>();
  parallel_for(d.N * d.O, 1, [&](int64_t b, int64_t e) {
    std::vector<float> z((size_t)d.P);  // one output channel's z, finished by the epilogue
    for (int64_t no = b; no < e; ++no) {
      const int64_t n = no / d.O, o = no % d.O, c0 = (o / d.Og) * d.Cg;
      const float* wo = wf.data() + o * d.K;
      for (int64_t i = 0; i < d.Ho; ++i)
        for (int64_t j = 0; j < d.Wo; ++j) {
          float acc = 0.f;
          for (int64_t c = 0; c < d.Cg; ++c) {
            const float* xc = xf.data() + (n * d.C + c0 + c) * d.H * d.W;
            for (int64_t kh = 0; kh < d.kH; ++kh) {
              const int64_t ih = i * p.stride_y - p.pad_top + kh * p.dilation_y;
              if (ih < 0 || ih >= d.H) continue;
              for (int64_t kw = 0; kw < d.kW; ++kw) {
                const int64_t iw = j * p.stride_x - p.pad_left + kw * p.dilation_x;
                if (iw < 0 || iw >= d.W) continue;
                acc = round_to_half(acc + xc[ih * d.W + iw] * wo[(c * d.kH + kh) * d.kW + kw]);
              }
            }
          }
          if (p.has_bias) acc = round_to_half(acc + bf[o]);
          z[i * d.Wo + j] = acc;
        }
      ep.finish(z.data(), d.P, no * d.P);
      float_to_half_n(z.data(), out + no * d.P, (size_t)d.P);
    }
  });
}

void conv2d_backward_input_half(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p) {
  const std::vector<float> dyf = to_float_vector(dy), wf = to_float_vector(w);
  const ConvDims d(p);
  uint16_t* out = dx.data<uint16_t>();
  parallel_for(d.N * d.C, 1, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / d.C, c = nc % d.C, g = c / d.Cg, cl = c % d.Cg;
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t v = 0; v < d.W; ++v) {
          float acc = 0.f;
          for (int64_t o = g * d.Og; o < (g + 1) * d.Og; ++o) {
            const float* dyo = dyf.data() + (n * d.O + o) * d.P;
            const float* wo = wf.data() + (o * d.Cg + cl) * d.kH * d.kW;
            for (int64_t kh = 0; kh < d.kH; ++kh) {
              // output row i reads input row h through tap kh when i*sh = h + top - kh*dh
              const int64_t ti = h + p.pad_top - kh * p.dilation_y;
              if (ti < 0 || ti % p.stride_y != 0 || ti / p.stride_y >= d.Ho) continue;
              const int64_t i = ti / p.stride_y;
              for (int64_t kw = 0; kw < d.kW; ++kw) {
                const int64_t tj = v + p.pad_left - kw * p.dilation_x;
                if (tj < 0 || tj % p.stride_x != 0 || tj / p.stride_x >= d.Wo) continue;
                acc = round_to_half(acc + dyo[i * d.Wo + tj / p.stride_x] * wo[kh * d.kW + kw]);
              }
            }
          }
          out[((n * d.C + c) * d.H + h) * d.W + v] = float_to_half(acc);
        }
    }
  });
}

}  // namespace metalnn::cpu
