#include "metalnn/backend/cpu/conv_half.h"

#include <vector>

#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/half.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {

void conv2d_forward_half(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                         const MnnConv2dParams& p) {
  // Widening half to float is exact, so the loops read float copies.
  const std::vector<float> xf = to_float_vector(x), wf = to_float_vector(w);
  const std::vector<float> bf = p.has_bias ? to_float_vector(bias) : std::vector<float>();
  const int64_t C = p.in_channels, H = p.in_height, W = p.in_width, O = p.out_channels;
  const int64_t Ho = p.out_height, Wo = p.out_width, kH = p.kernel_height, kW = p.kernel_width;
  const int64_t Cg = C / p.groups, Og = O / p.groups;
  uint16_t* out = y.data<uint16_t>();
  parallel_for((int64_t)p.batch * O, 1, [&](int64_t b, int64_t e) {
    for (int64_t no = b; no < e; ++no) {
      const int64_t n = no / O, o = no % O, c0 = (o / Og) * Cg;
      const float* wo = wf.data() + o * Cg * kH * kW;
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          float acc = 0.f;
          for (int64_t c = 0; c < Cg; ++c) {
            const float* xc = xf.data() + ((n * C + c0 + c) * H) * W;
            for (int64_t kh = 0; kh < kH; ++kh) {
              const int64_t ih = i * p.stride_y - p.pad_top + kh * p.dilation_y;
              if (ih < 0 || ih >= H) continue;
              for (int64_t kw = 0; kw < kW; ++kw) {
                const int64_t iw = j * p.stride_x - p.pad_left + kw * p.dilation_x;
                if (iw < 0 || iw >= W) continue;
                acc = round_to_half(acc + xc[ih * W + iw] * wo[(c * kH + kh) * kW + kw]);
              }
            }
          }
          if (p.has_bias) acc = round_to_half(acc + bf[o]);
          out[((n * O + o) * Ho + i) * Wo + j] = float_to_half(acc);
        }
    }
  });
}

void conv2d_backward_input_half(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p) {
  const std::vector<float> dyf = to_float_vector(dy), wf = to_float_vector(w);
  const int64_t C = p.in_channels, H = p.in_height, W = p.in_width, O = p.out_channels;
  const int64_t Ho = p.out_height, Wo = p.out_width, kH = p.kernel_height, kW = p.kernel_width;
  const int64_t Cg = C / p.groups, Og = O / p.groups;
  uint16_t* out = dx.data<uint16_t>();
  parallel_for((int64_t)p.batch * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / C, c = nc % C, g = c / Cg, cl = c % Cg;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t v = 0; v < W; ++v) {
          float acc = 0.f;
          for (int64_t o = g * Og; o < (g + 1) * Og; ++o) {
            const float* dyo = dyf.data() + (n * O + o) * Ho * Wo;
            const float* wo = wf.data() + (o * Cg + cl) * kH * kW;
            for (int64_t kh = 0; kh < kH; ++kh) {
              // output row i reads input row h through tap kh when i*sh = h + top - kh*dh
              const int64_t ti = h + p.pad_top - kh * p.dilation_y;
              if (ti < 0 || ti % p.stride_y != 0 || ti / p.stride_y >= Ho) continue;
              const int64_t i = ti / p.stride_y;
              for (int64_t kw = 0; kw < kW; ++kw) {
                const int64_t tj = v + p.pad_left - kw * p.dilation_x;
                if (tj < 0 || tj % p.stride_x != 0 || tj / p.stride_x >= Wo) continue;
                acc = round_to_half(acc + dyo[i * Wo + tj / p.stride_x] * wo[kh * kW + kw]);
              }
            }
          }
          out[((n * C + c) * H + h) * W + v] = float_to_half(acc);
        }
    }
  });
}

}  // namespace metalnn::cpu
