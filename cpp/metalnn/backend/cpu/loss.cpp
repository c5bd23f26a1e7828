#include "metalnn/backend/cpu/loss.h"

#include <cmath>
#include <vector>

#include "metalnn/backend/cpu/softmax.h"
#include "metalnn/core/half.h"

namespace metalnn::cpu {
namespace {

MnnSoftmaxParams softmax_view(const MnnSoftmaxCrossEntropyParams& p) {
  return MnnSoftmaxParams{p.n, p.c, p.s, 1u};
}

// Element (class k, position j) of a block laid out as rows (j * c + k) or columns (k * ld + j).
struct Layout {
  bool rows;
  int64_t c, ld;
  int64_t at(int64_t k, int64_t j) const { return rows ? j * c + k : k * ld + j; }
};

// Flat position index and sample of position j of a block.
inline int64_t position(const SoftmaxBlock& b, int64_t s, int64_t j) {
  return b.rows() ? b.first + j : b.image * s + b.first + j;
}
inline int64_t sample(const SoftmaxBlock& b, int64_t j) { return b.rows() ? b.first + j : b.image; }

}  // namespace

void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p) {
  const MnnSoftmaxParams sp = softmax_view(p);
  const int c = p.c;
  const float ls = p.label_smoothing, keep = 1.f - ls, spread = ls / (float)c;
  const int32_t* idx = p.index_labels ? labels.data<int32_t>() : nullptr;
  const float* w = p.has_weights ? weights.data<float>() : nullptr;
  float* out = loss.data<float>();
  for_each_softmax_block(sp, [&](const SoftmaxBlock& b) {
    thread_local std::vector<float> sx, sl, lp, work, unused;
    FloatBlock x = block_in(logits, sp, b, sx);
    FloatBlock pr = block_out(probs, sp, b, unused);  // float32: in place
    lp.resize((size_t)(b.count * c));
    // log-softmax first: the loss stays finite where probabilities underflow to 0.
    if (b.rows()) {
      softmax_rows(x.data, lp.data(), b.count, c, true);
    } else {
      work.resize((size_t)(2 * b.count));
      softmax_cols(x.data, x.ld, lp.data(), b.count, c, (int)b.count, true, work.data());
    }
    const Layout l_lp{b.rows(), c, b.count};
    if (b.rows()) exp_n(lp.data(), pr.data, b.count * c);
    else
      for (int64_t k = 0; k < c; ++k) exp_n(lp.data() + k * b.count, pr.data + k * pr.ld, b.count);
    FloatBlock lab{nullptr, 0};
    if (!p.index_labels) lab = block_in(labels, sp, b, sl);
    const Layout l_lab{b.rows(), c, lab.ld};
    for (int64_t j = 0; j < b.count; ++j) {
      float l = 0.f;
      if (p.index_labels) {
        l = -keep * lp[l_lp.at(idx[position(b, p.s, j)], j)];
        if (ls > 0.f) {  // only then: 0 * log(0) would make NaN
          float sum = 0.f;
          for (int64_t k = 0; k < c; ++k) sum += lp[l_lp.at(k, j)];
          l -= spread * sum;
        }
      } else {
        for (int64_t k = 0; k < c; ++k) {
          float t = keep * lab.data[l_lab.at(k, j)] + spread;
          if (t != 0.f) l -= t * lp[l_lp.at(k, j)];  // 0 * log(0) counts as 0
        }
      }
      if (w) l *= w[sample(b, j)];
      out[position(b, p.s, j)] = l;
    }
  });
}

float reduce_loss(const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p) {
  const float* v = loss.data<float>();
  int64_t n = loss.numel();
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  if (p.reduction == MNN_REDUCTION_MEAN) sum /= (double)n;
  return (float)sum;
}

void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits,
                                    const MnnSoftmaxCrossEntropyParams& p) {
  const MnnSoftmaxParams sp = softmax_view(p);
  const int c = p.c;
  const float ls = p.label_smoothing, keep = 1.f - ls, spread = ls / (float)c;
  const int32_t* idx = p.index_labels ? labels.data<int32_t>() : nullptr;
  const float* w = p.has_weights ? weights.data<float>() : nullptr;
  for_each_softmax_block(sp, [&](const SoftmaxBlock& b) {
    thread_local std::vector<float> sp_, sl, sg, scale;
    FloatBlock pr = block_in(probs, sp, b, sp_);
    FloatBlock g = block_out(dlogits, sp, b, sg);
    FloatBlock lab{nullptr, 0};
    if (!p.index_labels) lab = block_in(labels, sp, b, sl);
    const Layout l_pr{b.rows(), c, pr.ld}, l_g{b.rows(), c, g.ld}, l_lab{b.rows(), c, lab.ld};
    // The factor of each position: scale, dloss and weight.
    scale.resize((size_t)b.count);
    for (int64_t j = 0; j < b.count; ++j) {
      float f = p.scale;
      if (p.dloss_per_position) {
        int64_t pos = position(b, p.s, j);
        f *= dloss.dtype() == DType::float32 ? dloss.data<float>()[pos] : half_to_float(dloss.data<uint16_t>()[pos]);
      }
      if (w) f *= w[sample(b, j)];
      scale[j] = f;
    }
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < b.count; ++j) {
        float t = p.index_labels ? (idx[position(b, p.s, j)] == k ? keep : 0.f) + spread
                                 : keep * lab.data[l_lab.at(k, j)] + spread;
        g.data[l_g.at(k, j)] = scale[j] * (pr.data[l_pr.at(k, j)] - t);
      }
    block_commit(dlogits, sp, b, g);
  });
}

}  // namespace metalnn::cpu
