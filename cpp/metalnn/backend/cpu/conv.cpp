#include "metalnn/backend/cpu/conv.h"

#include <algorithm>
#include <vector>

#include "metalnn/backend/cpu/blas.h"
#include "metalnn/backend/cpu/conv_epilogue.h"
#include "metalnn/backend/cpu/conv_gemm.h"
#include "metalnn/backend/cpu/conv_half.h"
#include "metalnn/backend/cpu/conv_patches.h"
#include "metalnn/backend/cpu/conv_storage.h"
#include "metalnn/backend/cpu/conv_winograd.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

// Per-thread buffers reused across calls, so a training step does not allocate.
struct Scratch {
  std::vector<float> padded, packed_a, packed_b, col, col2im, in, in2, out;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

float* grow(std::vector<float>& v, int64_t size) {
  if ((int64_t)v.size() < size) v.resize((size_t)size);
  return v.data();
}

// Weights packed once per call, one operand per group: A = W_g (Og x K) or
// B = W_g^T (K x Og), following the orientation of the per-image product.
struct PackedWeights {
  std::vector<float> data;
  int64_t per_group = 0;
  PackedWeights(const float* w, const ConvDims& d, const GemmPlan& plan, bool as_b, bool transpose) {
    per_group = as_b ? plan.b_size() : plan.a_size();
    data.resize((size_t)(per_group * d.G));
    for (int64_t g = 0; g < d.G; ++g) {
      const float* wg = w + g * d.Og * d.K;
      float* out = data.data() + g * per_group;
      if (as_b) gemm_pack_b(plan, wg, d.K, transpose, out);
      else gemm_pack_a(plan, wg, d.K, transpose, out);
    }
  }
  GemmOperand group(int64_t g) const { return {data.data() + g * per_group, 0}; }
};

// The forward product per image and group, y_g (Og x P) = W_g (Og x K) * cols (K x P),
// runs either as is or as y_g^T = cols^T * W_g^T (stored transposed), whichever wastes
// less of the register tiles: the spatial axis (196 at 14x14) is the better M axis when K
// is long enough to pay for the transposed stores.
struct ForwardPlan {
  GemmPlan plan;
  bool transposed;
  explicit ForwardPlan(const ConvDims& d) {
    const GemmPlan t = gemm_plan(d.P, d.Og, d.K), n = gemm_plan(d.Og, d.P, d.K);
    transposed = gemm_cost(t, true) < gemm_cost(n, false);
    plan = transposed ? t : n;
  }
  double cost() const { return gemm_cost(plan, transposed); }
};

// The column matrix (K x P) of group g: the image itself for a pointwise kernel.
const float* columns(const MnnConv2dParams& p, const PatchIndex& idx, const ConvDims& d, const float* xp, int64_t g,
                     float* col) {
  const float* xg = xp + g * d.Cg * idx.Hp * idx.Wp;
  if (conv_is_pointwise(p)) return xg;
  im2col(xg, p, idx, col);
  return col;
}

// w is float32 OIHW; x and y may be float16 (widened / rounded per image). Each image's
// rows go through the epilogue (bias, pre-activation, neuron) right after its products.
void forward_f32(const Tensor& x, const float* w, const Epilogue& ep, const Tensor& y, const MnnConv2dParams& p) {
  const ConvDims d(p);
  const PatchIndex idx(p);
  const ForwardPlan fp(d);
  const PackedWeights pw(w, d, fp.plan, fp.transposed, fp.transposed);
  const int64_t xs = d.C * d.H * d.W, ys = d.O * d.P;
  parallel_for(d.N, 1, [&](int64_t n0, int64_t n1) {
    Scratch& s = scratch();
    float* col = grow(s.col, d.K * d.P);
    for (int64_t n = n0; n < n1; ++n) {
      const float* xp = padded_image(block_in(x, n, xs, s.in), d.C, p, idx, s.padded);
      float* yn = block_buffer(y, n, ys, s.out);
      for (int64_t g = 0; g < d.G; ++g) {
        const GemmOperand cols{columns(p, idx, d, xp, g, col), d.P};
        float* yg = yn + g * d.Og * d.P;
        if (fp.transposed) gemm(fp.plan, cols, pw.group(g), yg, d.P, false, true);
        else gemm(fp.plan, pw.group(g), cols, yg, d.P, false, false);
      }
      for (int64_t o = 0; o < d.O; ++o) ep.channel_row(yn + o * d.P, d.P, n * ys + o * d.P, o);
      block_out(y, n, ys, yn);
    }
  });
}

// With stride 1, dx is the forward convolution of dy with the flipped kernel
// (in/out channels swapped) and padding dil*(k-1) - pad; that needs pad <= dil*(k-1).
bool backward_input_as_forward(const MnnConv2dParams& p) {
  const int32_t eh = p.dilation_y * (p.kernel_height - 1), ew = p.dilation_x * (p.kernel_width - 1);
  return p.stride_y == 1 && p.stride_x == 1 && p.pad_top <= eh && p.pad_bottom <= eh && p.pad_left <= ew &&
         p.pad_right <= ew;
}

MnnConv2dParams flipped_params(const MnnConv2dParams& p) {
  MnnConv2dParams q = p;
  const int32_t eh = p.dilation_y * (p.kernel_height - 1), ew = p.dilation_x * (p.kernel_width - 1);
  q.in_channels = p.out_channels, q.in_height = p.out_height, q.in_width = p.out_width;
  q.out_channels = p.in_channels, q.out_height = p.in_height, q.out_width = p.in_width;
  q.pad_top = eh - p.pad_top, q.pad_bottom = eh - p.pad_bottom;
  q.pad_left = ew - p.pad_left, q.pad_right = ew - p.pad_right;
  q.has_bias = 0;
  return q;
}

// W'[g*Cg + c, o, kh, kw] = W[g*Og + o, c, kH-1-kh, kW-1-kw]: shape (C, Og, kH, kW).
std::vector<float> flipped_weights(const float* w, const ConvDims& d) {
  const int64_t kH = d.kH, kW = d.kW;
  std::vector<float> f((size_t)(d.C * d.Og * kH * kW));
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t o = 0; o < d.Og; ++o)
      for (int64_t c = 0; c < d.Cg; ++c)
        for (int64_t kh = 0; kh < kH; ++kh)
          for (int64_t kw = 0; kw < kW; ++kw)
            f[(((g * d.Cg + c) * d.Og + o) * kH + kh) * kW + kw] =
                w[(((g * d.Og + o) * d.Cg + c) * kH + (kH - 1 - kh)) * kW + (kW - 1 - kw)];
  return f;
}

// cols (K x P) = W_g^T (K x Og) * dy_g (Og x P), then col2im: any stride.
GemmPlan col2im_plan(const ConvDims& d) { return gemm_plan(d.K, d.P, d.Og); }

void backward_input_col2im(const Tensor& dy, const float* w, const Tensor& dx, const MnnConv2dParams& p) {
  const ConvDims d(p);
  const GemmPlan plan = col2im_plan(d);
  const PackedWeights pw(w, d, plan, false, true);
  const int64_t xs = d.C * d.H * d.W, ys = d.O * d.P;
  parallel_for(d.N, 1, [&](int64_t n0, int64_t n1) {
    Scratch& s = scratch();
    float* col = grow(s.col, d.K * d.P);
    for (int64_t n = n0; n < n1; ++n) {
      const float* dyn = block_in(dy, n, ys, s.in);
      float* dxn = block_buffer(dx, n, xs, s.out);
      std::fill(dxn, dxn + xs, 0.f);
      for (int64_t g = 0; g < d.G; ++g) {
        gemm(plan, pw.group(g), {dyn + g * d.Og * d.P, d.P}, col, d.P, false, false);
        col2im_add(col, d.Cg, p, dxn + g * d.Cg * d.H * d.W, s.col2im);
      }
      block_out(dx, n, xs, dxn);
    }
  });
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const MnnConv2dParams& p, const MnnNeuronParams& neuron, const Tensor& pre) {
  Epilogue ep{nullptr, neuron, pre.defined() ? &pre : nullptr};
  if (p.accumulation == MNN_ACCUMULATE_HALF) {
    conv2d_forward_half(x, w, bias, y, p, ep);
    return;
  }
  FloatView wf(w), bf(p.has_bias ? bias : Tensor());
  ep.bias = bf.get();
  if (winograd_for_forward(p)) winograd_forward(x, wf.get(), false, ep, y, p);
  else forward_f32(x, wf.get(), ep, y, p);
}

void conv2d_backward_input(const Tensor& dy, const Tensor& w, const Tensor& dx, const MnnConv2dParams& p) {
  if (p.accumulation == MNN_ACCUMULATE_HALF) {
    conv2d_backward_input_half(dy, w, dx, p);
    return;
  }
  FloatView wf(w);
  // The flipped-kernel forward avoids col2im; col2im wins when C/groups is tiny
  // (e.g. dx of a 1-channel input image), where that forward has almost no N axis.
  const ConvDims d(p);
  bool as_forward = backward_input_as_forward(p);
  if (as_forward && winograd_for_forward(flipped_params(p))) {
    winograd_forward(dy, wf.get(), true, Epilogue{}, dx, flipped_params(p));
    return;
  }
  if (as_forward) {
    const double flipped = ForwardPlan(ConvDims(flipped_params(p))).cost();
    as_forward = flipped <= gemm_cost(col2im_plan(d), false) + 2.0 * d.K * d.P;
  }
  if (!as_forward) {
    backward_input_col2im(dy, wf.get(), dx, p);
    return;
  }
  const std::vector<float> wflip = flipped_weights(wf.get(), d);
  forward_f32(dy, wflip.data(), Epilogue{}, dx, flipped_params(p));
}

void conv2d_backward_weight(const Tensor& dy, const Tensor& x, const Tensor& dw, const MnnConv2dParams& p) {
  if (winograd_for_weight(p)) {
    winograd_backward_weight(dy, x, dw, p);
    return;
  }
  const ConvDims d(p);
  const PatchIndex idx(p);
  // Per image: dw_g^T (K x Og) += patches (K x P) * dy_g^T (P x Og), both operands
  // transposed while packed. With a short K (first layers: 1 channel x 5x5) BLAS's
  // packing of dw_g (Og x K) += dy_g * cols^T is cheaper than ours, so it runs there.
  const bool blas = d.K < 64;
  const GemmPlan plan = gemm_plan(d.K, d.Og, d.P);
  const int64_t xs = d.C * d.H * d.W, ys = d.O * d.P, ws = d.O * d.K, group_stride = d.Cg * idx.Hp * idx.Wp;
  // One partial per thread, each over a contiguous range of images, summed at the end.
  const int64_t T = std::max<int64_t>(1, std::min<int64_t>(num_threads(), d.N));
  std::vector<float> partial((size_t)(T * ws), 0.f);
  parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
    Scratch& s = scratch();
    for (int64_t t = t0; t < t1; ++t) {
      float* acc = partial.data() + t * ws;
      for (int64_t n = d.N * t / T; n < d.N * (t + 1) / T; ++n) {
        const float* xp = padded_image(block_in(x, n, xs, s.in), d.C, p, idx, s.padded);
        const float* dyn = block_in(dy, n, ys, s.in2);
        for (int64_t g = 0; g < d.G; ++g) {
          const float* xg = xp + g * group_stride;
          const float* dyg = dyn + g * d.Og * d.P;
          if (blas) {
            const float* cols = columns(p, idx, d, xp, g, grow(s.col, d.K * d.P));
            sgemm_parallel(false, true, d.Og, d.K, d.P, 1.f, dyg, d.P, cols, d.P, 1.f, acc + g * d.Og * d.K, d.K);
            continue;
          }
          float* a = grow(s.packed_a, plan.a_size());
          float* b = grow(s.packed_b, plan.b_size());
          gemm_pack_a_gather(plan, xg, idx.tap.data(), idx.pos.data(), a);
          gemm_pack_b(plan, dyg, d.P, true, b);
          gemm(plan, {a, 0}, {b, 0}, acc + g * d.K * d.Og, d.Og, true, false);
        }
      }
    }
  });
  for (int64_t t = 1; t < T; ++t) {
    const float* src = partial.data() + t * ws;
    for (int64_t i = 0; i < ws; ++i) partial[i] += src[i];
  }
  FloatOut out(dw);
  float* dwf = out.get();
  if (blas) {
    std::copy(partial.begin(), partial.begin() + ws, dwf);
  } else {
    for (int64_t g = 0; g < d.G; ++g)
      for (int64_t o = 0; o < d.Og; ++o)
        for (int64_t k = 0; k < d.K; ++k) dwf[(g * d.Og + o) * d.K + k] = partial[(g * d.K + k) * d.Og + o];
  }
  out.finish();
}

}  // namespace metalnn::cpu
