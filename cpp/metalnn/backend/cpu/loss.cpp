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

// ------------------------------------------------------------------ generic loss

#include <algorithm>

#include "kernels/loss_math.h"
#include "metalnn/backend/cpu/storage.h"
#include "metalnn/core/thread_pool.h"

namespace metalnn::cpu {
namespace {

constexpr int64_t kChunk = 4096;

// Float32 pointer to elements [begin, begin + n) of a float32/float16 tensor (half widened into buf).
const float* float_span(const Tensor& t, int64_t begin, int64_t n, std::vector<float>& buf) {
  if (t.dtype() == DType::float32) return t.data<float>() + begin;
  buf.resize((size_t)n);
  half_to_float_n(t.data<uint16_t>() + begin, buf.data(), (size_t)n);
  return buf.data();
}

// Elementwise terms over [begin, end): the type is a constant, so the branch chain folds away.
template <uint32_t T>
void elementwise(const float* x, const float* lab, const float* w, float* loss, float* grad, int64_t begin,
                 int64_t end, const MnnLossParams& p) {
  const int64_t per_sample = (int64_t)p.c * p.s;
  const float c = (float)p.c;
  for (int64_t i = begin; i < end; ++i) {
    const float t = mnn_smooth_target(T, lab[i], p.label_smoothing, c);
    const MnnLossValue v = mnn_loss_elementwise(T, x[i - begin], t, p.delta, p.epsilon);
    float wi = p.weight;
    if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_SAMPLE) wi *= w[i / per_sample];
    else if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_TERM) wi *= w[i];
    loss[i] = wi * v.loss;
    grad[i] = wi * v.grad;
  }
}

using ElementwiseFn = void (*)(const float*, const float*, const float*, float*, float*, int64_t, int64_t,
                               const MnnLossParams&);

ElementwiseFn elementwise_fn(uint32_t type) {
  switch (type) {
    case MNN_LOSS_MEAN_ABSOLUTE_ERROR: return elementwise<MNN_LOSS_MEAN_ABSOLUTE_ERROR>;
    case MNN_LOSS_MEAN_SQUARED_ERROR: return elementwise<MNN_LOSS_MEAN_SQUARED_ERROR>;
    case MNN_LOSS_SIGMOID_CROSS_ENTROPY: return elementwise<MNN_LOSS_SIGMOID_CROSS_ENTROPY>;
    case MNN_LOSS_CATEGORICAL_CROSS_ENTROPY: return elementwise<MNN_LOSS_CATEGORICAL_CROSS_ENTROPY>;
    case MNN_LOSS_HINGE: return elementwise<MNN_LOSS_HINGE>;
    case MNN_LOSS_HUBER: return elementwise<MNN_LOSS_HUBER>;
    case MNN_LOSS_LOG: return elementwise<MNN_LOSS_LOG>;
    default: return elementwise<MNN_LOSS_KULLBACK_LEIBLER_DIVERGENCE>;
  }
}

// Softmax cross-entropy / cosine distance of `count` positions of one sample, the channels
// `ld` apart (ld = 1: one contiguous row per position when s == 1 is handled by count = 1).
// x, t: (c, ld) blocks starting at the first position; loss: one per position; grad like x.
void grouped_block(const float* x, const float* lab, int64_t ld, int64_t count, const float* w, float* loss,
                   float* grad, const MnnLossParams& p, std::vector<float>& work) {
  const int64_t c = p.c;
  work.assign((size_t)(4 * count), 0.f);
  float *m = work.data(), *sum = m + count, *tsum = sum + count, *acc = tsum + count;
  const float ls = p.label_smoothing, fc = (float)c;
  const bool softmax = p.type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY;
  if (softmax) {
    std::fill(m, m + count, -INFINITY);
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < count; ++j) {
        const float v = x[k * ld + j];
        m[j] = (v > m[j] || v != v) ? v : m[j];  // a NaN sticks: the position becomes NaN
      }
    for (int64_t k = 0; k < c; ++k)  // grad holds exp(x - max) until the last pass
      for (int64_t j = 0; j < count; ++j) {
        const float e = std::exp(x[k * ld + j] - m[j]);
        grad[k * ld + j] = e;
        sum[j] += e;
      }
    for (int64_t j = 0; j < count; ++j) m[j] += std::log(sum[j]);  // m <- log-sum-exp
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < count; ++j) {
        const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[k * ld + j], ls, fc);
        tsum[j] += t;
        if (t != 0.f) acc[j] -= t * (x[k * ld + j] - m[j]);  // 0 * log 0 counts as 0
      }
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < count; ++j) {
        const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[k * ld + j], ls, fc);
        grad[k * ld + j] = w[j] * (grad[k * ld + j] / sum[j] * tsum[j] - t);
      }
  } else {  // cosine distance: 1 - sum_c y t
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < count; ++j) {
        acc[j] -= x[k * ld + j] * lab[k * ld + j];
        grad[k * ld + j] = x[k * ld + j] != x[k * ld + j] ? x[k * ld + j] : -w[j] * lab[k * ld + j];
      }
    for (int64_t j = 0; j < count; ++j) acc[j] += 1.f;
  }
  for (int64_t j = 0; j < count; ++j) loss[j] = w[j] * acc[j];
}

}  // namespace

void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p) {
  const float* lab = labels.data<float>();
  const float* w = p.weights_mode != MNN_LOSS_WEIGHTS_NONE ? weights.data<float>() : nullptr;
  float* out = loss.data<float>();
  float* g = grad.data<float>();
  if (!mnn_loss_grouped(p.type)) {
    const ElementwiseFn fn = elementwise_fn(p.type);
    parallel_for(predictions.numel(), kChunk, [&](int64_t b, int64_t e) {
      thread_local std::vector<float> buf;
      for (int64_t i = b; i < e; i += kChunk) {
        const int64_t j = std::min(e, i + kChunk);
        fn(float_span(predictions, i, j - i, buf), lab, w, out, g, i, j, p);
      }
    });
    return;
  }
  const int64_t c = p.c, s = p.s;
  if (s == 1) {  // (N, C): one contiguous row per position
    parallel_for(p.n, std::max<int64_t>(1, kChunk / c), [&](int64_t b, int64_t e) {
      thread_local std::vector<float> buf, work;
      for (int64_t r = b; r < e; ++r) {
        float wr = p.weight * (w ? w[r] : 1.f);
        grouped_block(float_span(predictions, r * c, c, buf), lab + r * c, 1, 1, &wr, out + r, g + r * c, p, work);
      }
    });
    return;
  }
  // (N, C, S): blocks of up to 64 positions of one sample, channel-outer loops over contiguous positions.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (s + kBlock - 1) / kBlock;
  parallel_for(p.n * blocks, std::max<int64_t>(1, kChunk / (c * kBlock)), [&](int64_t b, int64_t e) {
    thread_local std::vector<float> xs, ws, work;
    for (int64_t q = b; q < e; ++q) {
      const int64_t img = q / blocks, j0 = (q % blocks) * kBlock, count = std::min(kBlock, s - j0);
      const int64_t base = img * c * s + j0;
      xs.resize((size_t)(c * count));
      for (int64_t k = 0; k < c; ++k) {
        if (predictions.dtype() == DType::float32) {
          const float* src = predictions.data<float>() + base + k * s;
          std::copy(src, src + count, xs.data() + k * count);
        } else {
          half_to_float_n(predictions.data<uint16_t>() + base + k * s, xs.data() + k * count, (size_t)count);
        }
      }
      ws.resize((size_t)count);
      for (int64_t j = 0; j < count; ++j) {
        float wj = p.weight;
        if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_SAMPLE) wj *= w[img];
        else if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_TERM) wj *= w[img * s + j0 + j];
        ws[j] = wj;
      }
      // Gather labels and scatter gradients through contiguous (c, count) scratch blocks.
      thread_local std::vector<float> ls_, gs;
      ls_.resize((size_t)(c * count));
      gs.resize((size_t)(c * count));
      for (int64_t k = 0; k < c; ++k) std::copy(lab + base + k * s, lab + base + k * s + count, ls_.data() + k * count);
      grouped_block(xs.data(), ls_.data(), count, count, ws.data(), out + img * s + j0, gs.data(), p, work);
      for (int64_t k = 0; k < c; ++k) std::copy(gs.data() + k * count, gs.data() + (k + 1) * count, g + base + k * s);
    }
  });
}

float reduce_loss_terms(const Tensor& loss, const MnnLossParams& p) {
  const float* v = loss.data<float>();
  const int64_t n = loss.numel();
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  return (float)(sum * (double)p.scale);
}

void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p) {
  const float* g = grad.data<float>();
  const bool grouped = mnn_loss_grouped(p.type);
  const int64_t cs = (int64_t)p.c * p.s;
  parallel_for(grad.numel(), kChunk, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> out, d;
    out.resize((size_t)(e - b));
    if (!p.dloss_per_term) {
      for (int64_t i = b; i < e; ++i) out[i - b] = p.scale * g[i];
    } else {
      // The terms of [b, e): per element, or per position (n, s) for the grouped types.
      const int64_t t0 = grouped ? (b / cs) * p.s : b, t1 = grouped ? ((e - 1) / cs + 1) * p.s : e;
      const float* dl = float_span(dloss, t0, t1 - t0, d);
      for (int64_t i = b; i < e; ++i) {
        const int64_t term = grouped ? (i / cs) * p.s + i % p.s : i;
        out[i - b] = p.scale * dl[term - t0] * g[i];
      }
    }
    if (dpred.dtype() == DType::float32) std::copy(out.begin(), out.end(), dpred.data<float>() + b);
    else float_to_half_n(out.data(), dpred.data<uint16_t>() + b, (size_t)(e - b));
  });
}

void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p) {
  std::vector<float> x = to_float_vector(predictions);
  const float* xp = x.data();
  const float* lab = labels.data<float>();
  float* out = loss.data<float>();
  float* g = grad.data<float>();
  const int64_t cells = (int64_t)p.n * p.s;
  parallel_for(cells, 64, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q)
      for (int a = 0; a < p.anchors; ++a)
        mnn_yolo_anchor(xp, lab, out, g, p, (int)(q / p.s), a, (int)(q % p.s));
  });
}

}  // namespace metalnn::cpu
