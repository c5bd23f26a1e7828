// Image patches for the GEMM-based convolution. Instead of an im2col matrix, the packed
// GEMM operand is gathered straight from a zero-padded copy of the image through two
// offset tables: element (position p, tap k) of a group's patches is
//   xp[pos[p] + tap[k]],   pos[p] = i*sh*Wp + j*sw,   tap[k] = c*Hp*Wp + kh*dh*Wp + kw*dw.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/conv_params.h"

namespace metalnn::cpu {

// The sizes of one convolution in int64 (P = H_out * W_out, K = Cg * kH * kW).
struct ConvDims {
  int64_t N, C, H, W, O, Ho, Wo, P, kH, kW, G, Cg, Og, K;
  explicit ConvDims(const MnnConv2dParams& p)
      : N(p.batch), C(p.in_channels), H(p.in_height), W(p.in_width), O(p.out_channels), Ho(p.out_height),
        Wo(p.out_width), P(Ho * Wo), kH(p.kernel_height), kW(p.kernel_width), G(p.groups), Cg(C / G),
        Og(O / G), K(Cg * kH * kW) {}
};

struct PatchIndex {
  int64_t Hp, Wp;             // padded image size
  bool padded;                // false: the image itself is read
  std::vector<int64_t> pos;   // H_out * W_out entries
  std::vector<int64_t> tap;   // (C / groups) * kH * kW entries
  explicit PatchIndex(const MnnConv2dParams& p);
};

// A 1x1, stride-1, unpadded kernel: the image itself is the column matrix.
inline bool conv_is_pointwise(const MnnConv2dParams& p) {
  return p.kernel_height == 1 && p.kernel_width == 1 && p.stride_y == 1 && p.stride_x == 1 && p.pad_top == 0 &&
         p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
}

// The image (C, H, W) as the patches read it: x itself, or a zero-padded copy in scratch.
const float* padded_image(const float* x, int64_t C, const MnnConv2dParams& p, const PatchIndex& idx,
                          std::vector<float>& scratch);

// col (K x H_out*W_out, K = (C/groups)*kH*kW) = the patches of one group of the padded
// image xp: col[k][p] = xp[tap[k] + pos[p]].
void im2col(const float* xp, const MnnConv2dParams& p, const PatchIndex& idx, float* col);

// x (C, H, W) += the column matrix col (C*kH*kW x H_out*W_out) scattered back; taps in the
// padding are dropped. Used by the strided backward_input.
void col2im_add(const float* col, int64_t C, const MnnConv2dParams& p, float* x, std::vector<float>& scratch);

}  // namespace metalnn::cpu
