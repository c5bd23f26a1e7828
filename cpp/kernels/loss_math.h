// Loss math shared by the CPU backend, loss.metal and loss.cu, so the three compute the same
// formulas: every elementwise MnnLossType as (loss, d loss / d prediction), label smoothing,
// and the YOLO loss of one anchor box (MPSCNNYOLOLoss). Compiles as C++, MSL and CUDA.
#pragma once
#include "loss_params.h"

#if defined(__METAL_VERSION__)
#define MNN_LFN inline
#define MNN_LCONST constant
#elif defined(__CUDACC__)
#define MNN_LFN __host__ __device__ inline
#define MNN_LCONST
#else
#include <cmath>
#define MNN_LFN inline
#define MNN_LCONST
#endif

MNN_LFN float mnn_lexp(float x) {
#if defined(__METAL_VERSION__)
  return exp(x);
#elif defined(__CUDACC__)
  return expf(x);
#else
  return std::exp(x);
#endif
}

MNN_LFN float mnn_llog(float x) {
#if defined(__METAL_VERSION__)
  return log(x);
#elif defined(__CUDACC__)
  return logf(x);
#else
  return std::log(x);
#endif
}

// log(1 + x) for x in [0, 1] (the sigmoid cross-entropy's softplus tail).
MNN_LFN float mnn_llog1p(float x) {
#if defined(__METAL_VERSION__)
  const float u = 1.0f + x;  // Kahan: the rounding error of u cancels in x / (u - 1)
  return u == 1.0f ? x : log(u) * x / (u - 1.0f);
#elif defined(__CUDACC__)
  return log1pf(x);
#else
  return std::log1p(x);
#endif
}

MNN_LFN float mnn_lmin(float a, float b) { return a < b ? a : b; }
MNN_LFN float mnn_lmax(float a, float b) { return a > b ? a : b; }

MNN_LFN float mnn_lsigmoid(float y) {
  if (y >= 0.0f) return 1.0f / (1.0f + mnn_lexp(-y));
  const float e = mnn_lexp(y);  // no overflow for large negative y
  return e / (1.0f + e);
}

// The types with one loss per position over the c channels (the rest: one per element).
MNN_LFN bool mnn_loss_grouped(uint32_t type) {
  return type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY || type == MNN_LOSS_COSINE_DISTANCE;
}

struct MnnLossValue {
  float loss, grad;
};

// The target after label smoothing (MPSCNNLossDescriptor.labelSmoothing): softmax over c
// classes spreads ls / c, sigmoid spreads ls / 2; other types ignore it.
MNN_LFN float mnn_smooth_target(uint32_t type, float t, float ls, float c) {
  if (ls == 0.0f) return t;
  if (type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY) return t * (1.0f - ls) + ls / c;
  if (type == MNN_LOSS_SIGMOID_CROSS_ENTROPY) return t * (1.0f - ls) + 0.5f * ls;
  return t;
}

// One elementwise loss term of prediction y and (smoothed) target t, and d loss / d y.
// Zero targets contribute 0 to the logarithmic terms (0 * log 0 counts as 0); a NaN
// prediction gives a NaN loss and gradient.
MNN_LFN MnnLossValue mnn_loss_elementwise(uint32_t type, float y, float t, float delta, float eps) {
  MnnLossValue r;
  r.loss = 0.0f;
  r.grad = 0.0f;
  const float d = y - t;
  if (type == MNN_LOSS_MEAN_ABSOLUTE_ERROR) {
    r.loss = d < 0.0f ? -d : d;
    r.grad = d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
  } else if (type == MNN_LOSS_MEAN_SQUARED_ERROR) {
    r.loss = d * d;
    r.grad = 2.0f * d;
  } else if (type == MNN_LOSS_SIGMOID_CROSS_ENTROPY) {
    const float a = y < 0.0f ? -y : y;
    r.loss = (y > 0.0f ? y : 0.0f) - y * t + mnn_llog1p(mnn_lexp(-a));
    r.grad = mnn_lsigmoid(y) - t;
  } else if (type == MNN_LOSS_CATEGORICAL_CROSS_ENTROPY) {
    if (t != 0.0f) {
      r.loss = -t * mnn_llog(y);
      r.grad = -t / y;
    }
  } else if (type == MNN_LOSS_HINGE) {
    const float sgn = 2.0f * t - 1.0f;  // labels 0 / 1 -> -1 / +1
    const float m = 1.0f - sgn * y;
    r.loss = m > 0.0f ? m : 0.0f;
    r.grad = m > 0.0f ? -sgn : 0.0f;
  } else if (type == MNN_LOSS_HUBER) {
    const float a = d < 0.0f ? -d : d;
    if (a <= delta) {
      r.loss = 0.5f * d * d;
      r.grad = d;
    } else {
      r.loss = delta * (a - 0.5f * delta);
      r.grad = d > 0.0f ? delta : -delta;
    }
  } else if (type == MNN_LOSS_LOG) {
    if (t != 0.0f) {
      r.loss -= t * mnn_llog(y + eps);
      r.grad -= t / (y + eps);
    }
    if (t != 1.0f) {
      r.loss -= (1.0f - t) * mnn_llog(1.0f - y + eps);
      r.grad += (1.0f - t) / (1.0f - y + eps);
    }
  } else if (type == MNN_LOSS_KULLBACK_LEIBLER_DIVERGENCE) {
    if (t != 0.0f) r.loss = t * (mnn_llog(t) - y);
    r.grad = -t;
  }
  if (y != y) {  // branch-selected formulas (hinge, zero targets) would hide a NaN
    r.loss = y;
    r.grad = y;
  }
  return r;
}

// One term of a YOLO component (type and options in `t`), after its label smoothing.
MNN_LFN MnnLossValue mnn_loss_term(MNN_LCONST const MnnLossTerm& t, float y, float target, float classes) {
  return mnn_loss_elementwise(t.type, y, mnn_smooth_target(t.type, target, t.label_smoothing, classes), t.delta,
                              t.epsilon);
}

// Intersection over union of two boxes given by centre and size (same units).
MNN_LFN float mnn_box_iou(float ax, float ay, float aw, float ah, float bx, float by, float bw, float bh) {
  const float ix = mnn_lmin(ax + 0.5f * aw, bx + 0.5f * bw) - mnn_lmax(ax - 0.5f * aw, bx - 0.5f * bw);
  const float iy = mnn_lmin(ay + 0.5f * ah, by + 0.5f * bh) - mnn_lmax(ay - 0.5f * ah, by - 0.5f * bh);
  const float inter = (ix > 0.0f ? ix : 0.0f) * (iy > 0.0f ? iy : 0.0f);
  const float uni = aw * ah + bw * bh - inter;
  return uni > 0.0f ? inter / uni : 0.0f;
}

// YOLO loss of anchor `a` at grid cell `j` of image `n`: writes the loss and the gradient
// of its 5 + classes channels. pred/lab index the (n, anchors * (5 + classes), s) arrays;
// loss and grad are float arrays of the same shape. See python/metalnn/ops/loss.py for the math.
template <class P, class L, class O>
MNN_LFN void mnn_yolo_anchor(P pred, L lab, O loss, O grad, MNN_LCONST const MnnYoloLossParams& p, int n, int a,
                             int j) {
  const int k = p.classes, s = p.s, per = 5 + p.classes;
  const int img = n * p.anchors * per * s;
  const int base = img + a * per * s + j;
  const float aw = p.anchor_w[a], ah = p.anchor_h[a];
  const float rx = (float)pred[base], ry = (float)pred[base + s];
  const float rw = (float)pred[base + 2 * s], rh = (float)pred[base + 3 * s];
  const float rc = (float)pred[base + 4 * s];
  const float px = mnn_lsigmoid(rx), py = mnn_lsigmoid(ry);
  const float pw = aw * mnn_lexp(rw), ph = ah * mnn_lexp(rh);
  const float conf = (float)lab[base + 4 * s];
  if (conf > 0.0f) {
    const float tx = (float)lab[base], ty = (float)lab[base + s];
    const float tw = (float)lab[base + 2 * s], th = (float)lab[base + 3 * s];
    MnnLossValue v = mnn_loss_term(p.xy, px, tx, 2.0f);
    loss[base] = p.scale_xy * v.loss;
    grad[base] = p.scale_xy * v.grad * px * (1.0f - px);
    v = mnn_loss_term(p.xy, py, ty, 2.0f);
    loss[base + s] = p.scale_xy * v.loss;
    grad[base + s] = p.scale_xy * v.grad * py * (1.0f - py);
    v = mnn_loss_term(p.wh, rw, mnn_llog(tw / aw), 2.0f);
    loss[base + 2 * s] = p.scale_wh * v.loss;
    grad[base + 2 * s] = p.scale_wh * v.grad;
    v = mnn_loss_term(p.wh, rh, mnn_llog(th / ah), 2.0f);
    loss[base + 3 * s] = p.scale_wh * v.loss;
    grad[base + 3 * s] = p.scale_wh * v.grad;
    // Rescore: the confidence target is the IoU of the predicted and true boxes (a constant
    // for the gradient); at or above min_iou_for_object_presence it counts as a sure hit.
    float target = conf;
    if (p.rescore != 0u) {
      const float iou = mnn_box_iou(px, py, pw, ph, tx, ty, tw, th);
      target = iou >= p.min_iou_for_object_presence ? conf : conf * iou;
    }
    v = mnn_loss_term(p.confidence, rc, target, 2.0f);
    loss[base + 4 * s] = p.scale_object * v.loss;
    grad[base + 4 * s] = p.scale_object * v.grad;
    const int c0 = base + 5 * s;
    const float ls = p.class_term.label_smoothing;
    if (p.class_term.type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY) {
      float m = -INFINITY;
      bool nan = false;
      for (int c = 0; c < k; ++c) {
        const float x = (float)pred[c0 + c * s];
        nan = nan || x != x;
        m = mnn_lmax(m, x);
      }
      if (nan) m = NAN;  // a NaN logit poisons the whole anchor, as in the softmax
      float sum = 0.0f, tsum = 0.0f;
      for (int c = 0; c < k; ++c) {
        sum += mnn_lexp((float)pred[c0 + c * s] - m);
        tsum += mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, (float)lab[c0 + c * s], ls, (float)k);
      }
      const float lse = m + mnn_llog(sum);
      for (int c = 0; c < k; ++c) {
        const int i = c0 + c * s;
        const float lp = (float)pred[i] - lse;
        const float tc = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, (float)lab[i], ls, (float)k);
        loss[i] = tc != 0.0f ? -p.scale_class * tc * lp : 0.0f;
        grad[i] = p.scale_class * (mnn_lexp(lp) * tsum - tc);
      }
    } else {
      for (int c = 0; c < k; ++c) {
        const int i = c0 + c * s;
        v = mnn_loss_term(p.class_term, (float)pred[i], (float)lab[i], 2.0f);
        loss[i] = p.scale_class * v.loss;
        grad[i] = p.scale_class * v.grad;
      }
    }
    return;
  }
  // No object: only the confidence trains, toward 0, unless the predicted box overlaps a true
  // box of this cell by max_iou_for_object_absence or more (neither sure hit nor sure miss).
  float best = 0.0f;
  for (int b = 0; b < p.anchors; ++b) {
    const int o = img + b * per * s + j;
    if ((float)lab[o + 4 * s] > 0.0f)
      best = mnn_lmax(best, mnn_box_iou(px, py, pw, ph, (float)lab[o], (float)lab[o + s], (float)lab[o + 2 * s],
                                    (float)lab[o + 3 * s]));
  }
  for (int f = 0; f < per; ++f) {
    loss[base + f * s] = 0.0f;
    grad[base + f * s] = 0.0f;
  }
  if (best < p.max_iou_for_object_absence) {
    const MnnLossValue v = mnn_loss_term(p.confidence, rc, 0.0f, 2.0f);
    loss[base + 4 * s] = p.scale_no_object * v.loss;
    grad[base + 4 * s] = p.scale_no_object * v.grad;
  }
}
