#include "metalnn/backend/cpu/conv_patches.h"

#include <cstring>

namespace metalnn::cpu {

PatchIndex::PatchIndex(const MnnConv2dParams& p)
    : Hp(p.in_height + p.pad_top + p.pad_bottom), Wp(p.in_width + p.pad_left + p.pad_right),
      padded(Hp != p.in_height || Wp != p.in_width) {
  pos.resize((size_t)p.out_height * p.out_width);
  for (int64_t i = 0; i < p.out_height; ++i)
    for (int64_t j = 0; j < p.out_width; ++j) pos[i * p.out_width + j] = i * p.stride_y * Wp + j * p.stride_x;
  const int64_t Cg = p.in_channels / p.groups;
  tap.resize((size_t)(Cg * p.kernel_height * p.kernel_width));
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t kh = 0; kh < p.kernel_height; ++kh)
      for (int64_t kw = 0; kw < p.kernel_width; ++kw)
        tap[(c * p.kernel_height + kh) * p.kernel_width + kw] = (c * Hp + kh * p.dilation_y) * Wp + kw * p.dilation_x;
}

const float* padded_image(const float* x, int64_t C, const MnnConv2dParams& p, const PatchIndex& idx,
                          std::vector<float>& scratch) {
  if (!idx.padded) return x;
  const int64_t H = p.in_height, W = p.in_width, Hp = idx.Hp, Wp = idx.Wp;
  if ((int64_t)scratch.size() < C * Hp * Wp) scratch.resize((size_t)(C * Hp * Wp));
  float* xp = scratch.data();
  for (int64_t c = 0; c < C; ++c) {
    float* img = xp + c * Hp * Wp;
    std::memset(img, 0, sizeof(float) * (size_t)(p.pad_top * Wp));
    for (int64_t h = 0; h < H; ++h) {
      float* row = img + (h + p.pad_top) * Wp;
      std::memset(row, 0, sizeof(float) * (size_t)p.pad_left);
      std::memcpy(row + p.pad_left, x + (c * H + h) * W, sizeof(float) * (size_t)W);
      std::memset(row + p.pad_left + W, 0, sizeof(float) * (size_t)p.pad_right);
    }
    std::memset(img + (p.pad_top + H) * Wp, 0, sizeof(float) * (size_t)(p.pad_bottom * Wp));
  }
  return xp;
}

namespace {

// Copies n floats in 8-float blocks, the last block overlapping the previous one, so
// short rows (14 floats at MNIST sizes) take two vector moves and no tail loop.
inline void copy_short(float* d, const float* s, int64_t n) {
  if (n < 8) {
    for (int64_t j = 0; j < n; ++j) d[j] = s[j];
    return;
  }
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) std::memcpy(d + j, s + j, 8 * sizeof(float));
  if (j < n) std::memcpy(d + n - 8, s + n - 8, 8 * sizeof(float));
}

}  // namespace

void im2col(const float* xp, const MnnConv2dParams& p, const PatchIndex& idx, float* col) {
  const int64_t Ho = p.out_height, Wo = p.out_width, P = Ho * Wo, row = p.stride_y * idx.Wp, sw = p.stride_x;
  for (size_t k = 0; k < idx.tap.size(); ++k) {
    const float* s = xp + idx.tap[k];
    float* d = col + (int64_t)k * P;
    if (sw == 1) {
      for (int64_t i = 0; i < Ho; ++i, d += Wo, s += row) copy_short(d, s, Wo);
    } else {
      for (int64_t i = 0; i < Ho; ++i, d += Wo, s += row)
        for (int64_t j = 0; j < Wo; ++j) d[j] = s[j * sw];
    }
  }
}

void col2im_add(const float* col, int64_t C, const MnnConv2dParams& p, float* x, std::vector<float>& scratch) {
  const int64_t H = p.in_height, W = p.in_width, Ho = p.out_height, Wo = p.out_width;
  const int64_t Hp = H + p.pad_top + p.pad_bottom, Wp = W + p.pad_left + p.pad_right;
  const int64_t kH = p.kernel_height, kW = p.kernel_width, sh = p.stride_y, sw = p.stride_x;
  // Scatter into a zero-bordered buffer (no bounds checks), then add its interior to x.
  if ((int64_t)scratch.size() < C * Hp * Wp) scratch.resize((size_t)(C * Hp * Wp));
  float* xp = scratch.data();
  std::memset(xp, 0, sizeof(float) * (size_t)(C * Hp * Wp));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < kH; ++kh)
      for (int64_t kw = 0; kw < kW; ++kw) {
        const float* src = col + ((c * kH + kh) * kW + kw) * Ho * Wo;
        float* dst = xp + (c * Hp + kh * p.dilation_y) * Wp + kw * p.dilation_x;
        for (int64_t i = 0; i < Ho; ++i) {
          float* d = dst + i * sh * Wp;
          const float* s = src + i * Wo;
          for (int64_t j = 0; j < Wo; ++j) d[j * sw] += s[j];
        }
      }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t h = 0; h < H; ++h) {
      float* d = x + (c * H + h) * W;
      const float* s = xp + (c * Hp + h + p.pad_top) * Wp + p.pad_left;
      for (int64_t v = 0; v < W; ++v) d[v] += s[v];
    }
}

}  // namespace metalnn::cpu
