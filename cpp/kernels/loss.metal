// Softmax cross-entropy, forward and backward, float32 and float16 logits (float accumulation).
// Logits are viewed as (n, c, s) (loss_params.h): one distribution over c at each of the n * s
// positions. Probabilities, per-position loss, weights and probability labels are float32, as
// in the CPU backend's state; class-index labels are int32.
//
// Kernels and buffers:
//   softmax_cross_entropy_forward_{float32,float16}      grid: n * s threadgroups (any size <= 1024)
//     logits T [[buffer(0)]], labels [[buffer(1)]] (int32 (n, s) indices, or float32 (n, c, s)
//     probabilities, read through the same `device const int*`), weights float (n) [[buffer(2)]],
//     probs float (n, c, s) [[buffer(3)]] out, loss float (n * s) [[buffer(4)]] out (per position,
//     weighted), MnnSoftmaxCrossEntropyParams [[buffer(5)]].
//     lp = log_softmax(logits); probs = exp(lp); target = (1 - ls) * label + ls / c;
//     loss = w[n] * -sum_c target * lp (a zero target contributes 0, so log(0) never makes NaN).
//     With has_weights == 0 buffer(2) is not read (bind any buffer).
//   softmax_cross_entropy_forward_simd_{float32,float16}  same buffers; one simd-group per position, no
//     threadgroup memory or barriers (for small c, e.g. 10 classes, where a threadgroup per position idles):
//     grid: ceil(n * s / simdgroups_per_threadgroup) threadgroups; position = threadgroup * nsg + simd-group.
//   softmax_cross_entropy_reduce                         grid: one threadgroup (any size <= 1024)
//     loss float (n * s) [[buffer(0)]], out float (1) [[buffer(1)]], MnnSoftmaxCrossEntropyParams [[buffer(2)]]
//     out = sum (reduction sum) or sum / (n * s) (reduction mean); simd_sum + threadgroup partials.
//   softmax_cross_entropy_backward_{float32,float16}     grid: n * c * s threads
//     probs float [[buffer(0)]], labels [[buffer(1)]] (as above), weights float [[buffer(2)]],
//     dloss float (n * s) [[buffer(3)]] (read only when p.dloss_per_position; the host widens a
//     float16 dloss), dlogits T (n, c, s) [[buffer(4)]] out, MnnSoftmaxCrossEntropyParams [[buffer(5)]].
//     dlogits = (p.scale * dloss[pos] * w[n]) * (probs - target)   (CPU order of products)
//
// Generic loss (MPSCNNLoss, loss_math.h holds the formulas), MnnLossParams p:
//   loss_forward_{float32,float16}          grid: n * c * s threads (elementwise types)
//   loss_forward_grouped_{float32,float16}  softmax cross-entropy / cosine distance: one simd-group per
//     position; grid: ceil(n * s / simdgroups_per_threadgroup) threadgroups
//     predictions T (n, c, s) [[buffer(0)]], labels float (n, c, s) [[buffer(1)]], weights float [[buffer(2)]]
//     (per sample or per term by p.weights_mode; not read without), loss float (one per term) [[buffer(3)]]
//     out, grad float (n, c, s) [[buffer(4)]] out, MnnLossParams [[buffer(5)]].
//     loss[term] = w * l(y, t); grad = w * d l / d y.
//   loss_reduce                             grid: one threadgroup (any size <= 1024)
//     loss float (p.count) [[buffer(0)]], out float (1) [[buffer(1)]], MnnLossParams [[buffer(2)]]:
//     out = p.scale * sum (Kahan-compensated per thread, simd_sum + threadgroup partials).
//   loss_backward_{float32,float16}         grid: n * c * s threads
//     grad float [[buffer(0)]], dloss float [[buffer(1)]] (one per term; read only when p.dloss_per_term),
//     dpredictions T [[buffer(2)]] out, MnnLossParams [[buffer(3)]]: dpred = p.scale * dloss[term] * grad.
// YOLO loss (MPSCNNYOLOLoss):
//   yolo_loss_forward_{float32,float16}     grid: n * anchors * s threads (one anchor box of one cell each)
//     predictions T (n, anchors * (5 + classes), s) [[buffer(0)]], labels float (same) [[buffer(1)]],
//     loss float [[buffer(2)]] out, grad float [[buffer(3)]] out (both per element),
//     MnnYoloLossParams [[buffer(4)]].
#include <metal_stdlib>
#include "metal_common.h"
#include "loss_params.h"
using namespace metal;
#include "loss_math.h"

struct LossThread {
  uint pos, tid, ntg, lane, sg, nsg;
};

template <typename T>
inline void sce_forward(device const T* x, device const int* labels, device const float* weights,
                        device float* probs, device float* loss, constant MnnSoftmaxCrossEntropyParams& p,
                        threadgroup float* partial, LossThread t) {
  if (t.pos >= (uint)(p.n * p.s)) return;  // whole threadgroup leaves together
  const uint s = (uint)p.s, c = (uint)p.c;
  const uint img = t.pos / s;
  const uint base = img * c * s + t.pos % s;
  const float ls = p.label_smoothing, keep = 1.0f - ls, spread = ls / float(c);
  float m = -INFINITY;
  for (uint k = t.tid; k < c; k += t.ntg) m = fmax(m, mnn_load(x, base + k * s));
  m = mnn_threadgroup_max(m, partial, t.lane, t.sg, t.nsg);
  float sum = 0.0f;
  for (uint k = t.tid; k < c; k += t.ntg) sum += exp(mnn_load(x, base + k * s) - m);
  // A NaN logit makes sum NaN, so the whole position (probabilities and loss) is NaN, as on the CPU.
  const float lse = log(mnn_threadgroup_sum(sum, partial, t.lane, t.sg, t.nsg));
  // Each thread's share of -sum_c target * lp (index labels: only the smoothing part).
  float acc = 0.0f;
  for (uint k = t.tid; k < c; k += t.ntg) {
    const uint i = base + k * s;
    const float lp = (mnn_load(x, i) - m) - lse;
    probs[i] = exp(lp);
    if (p.index_labels != 0u) {
      if (ls > 0.0f) acc -= spread * lp;
      if (labels[t.pos] == (int)k) acc -= keep * lp;
    } else {
      const float tk = keep * as_type<float>(labels[i]) + spread;
      if (tk != 0.0f) acc -= tk * lp;
    }
  }
  float l = mnn_threadgroup_sum(acc, partial, t.lane, t.sg, t.nsg);
  if (t.tid == 0) {
    if (p.has_weights != 0u) l *= weights[img];
    loss[t.pos] = l;
  }
}

kernel void softmax_cross_entropy_forward_float32(device const float* x [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                  device const float* weights [[buffer(2)]],
                                                  device float* probs [[buffer(3)]], device float* loss [[buffer(4)]],
                                                  constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                  uint pos [[threadgroup_position_in_grid]],
                                                  uint tid [[thread_position_in_threadgroup]],
                                                  uint ntg [[threads_per_threadgroup]],
                                                  uint lane [[thread_index_in_simdgroup]],
                                                  uint sg [[simdgroup_index_in_threadgroup]],
                                                  uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  sce_forward(x, labels, weights, probs, loss, p, partial, LossThread{pos, tid, ntg, lane, sg, nsg});
}

kernel void softmax_cross_entropy_forward_float16(device const half* x [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                  device const float* weights [[buffer(2)]],
                                                  device float* probs [[buffer(3)]], device float* loss [[buffer(4)]],
                                                  constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                  uint pos [[threadgroup_position_in_grid]],
                                                  uint tid [[thread_position_in_threadgroup]],
                                                  uint ntg [[threads_per_threadgroup]],
                                                  uint lane [[thread_index_in_simdgroup]],
                                                  uint sg [[simdgroup_index_in_threadgroup]],
                                                  uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  sce_forward(x, labels, weights, probs, loss, p, partial, LossThread{pos, tid, ntg, lane, sg, nsg});
}

// The same per position, one simd-group each: lanes stride over c and reduce with simd functions.
template <typename T>
inline void sce_forward_simd(device const T* x, device const int* labels, device const float* weights,
                             device float* probs, device float* loss, constant MnnSoftmaxCrossEntropyParams& p,
                             uint pos, uint lane, uint width) {
  if (pos >= (uint)(p.n * p.s)) return;  // the whole simd-group leaves together
  const uint s = (uint)p.s, c = (uint)p.c;
  const uint img = pos / s;
  const uint base = img * c * s + pos % s;
  const float ls = p.label_smoothing, keep = 1.0f - ls, spread = ls / float(c);
  float m = -INFINITY;
  for (uint k = lane; k < c; k += width) m = fmax(m, mnn_load(x, base + k * s));
  m = simd_max(m);
  float sum = 0.0f;
  for (uint k = lane; k < c; k += width) sum += exp(mnn_load(x, base + k * s) - m);
  const float lse = log(simd_sum(sum));
  float acc = 0.0f;
  for (uint k = lane; k < c; k += width) {
    const uint i = base + k * s;
    const float lp = (mnn_load(x, i) - m) - lse;
    probs[i] = exp(lp);
    if (p.index_labels != 0u) {
      if (ls > 0.0f) acc -= spread * lp;
      if (labels[pos] == (int)k) acc -= keep * lp;
    } else {
      const float tk = keep * as_type<float>(labels[i]) + spread;
      if (tk != 0.0f) acc -= tk * lp;
    }
  }
  float l = simd_sum(acc);
  if (lane == 0) {
    if (p.has_weights != 0u) l *= weights[img];
    loss[pos] = l;
  }
}

kernel void softmax_cross_entropy_forward_simd_float32(device const float* x [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                       device const float* weights [[buffer(2)]],
                                                       device float* probs [[buffer(3)]],
                                                       device float* loss [[buffer(4)]],
                                                       constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                       uint tgpos [[threadgroup_position_in_grid]],
                                                       uint ntg [[threads_per_threadgroup]],
                                                       uint lane [[thread_index_in_simdgroup]],
                                                       uint sg [[simdgroup_index_in_threadgroup]],
                                                       uint nsg [[simdgroups_per_threadgroup]],
                                                       uint simd_width [[threads_per_simdgroup]]) {
  // The last simd-group of a threadgroup that is not a multiple of the width has fewer lanes.
  const uint width = min(simd_width, ntg - sg * simd_width);
  sce_forward_simd(x, labels, weights, probs, loss, p, tgpos * nsg + sg, lane, width);
}

kernel void softmax_cross_entropy_forward_simd_float16(device const half* x [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                       device const float* weights [[buffer(2)]],
                                                       device float* probs [[buffer(3)]],
                                                       device float* loss [[buffer(4)]],
                                                       constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                       uint tgpos [[threadgroup_position_in_grid]],
                                                       uint ntg [[threads_per_threadgroup]],
                                                       uint lane [[thread_index_in_simdgroup]],
                                                       uint sg [[simdgroup_index_in_threadgroup]],
                                                       uint nsg [[simdgroups_per_threadgroup]],
                                                       uint simd_width [[threads_per_simdgroup]]) {
  // The last simd-group of a threadgroup that is not a multiple of the width has fewer lanes.
  const uint width = min(simd_width, ntg - sg * simd_width);
  sce_forward_simd(x, labels, weights, probs, loss, p, tgpos * nsg + sg, lane, width);
}

// One threadgroup folds every position: the loss vector is small (one value per position) and
// a single pass keeps the result independent of the grid.
kernel void softmax_cross_entropy_reduce(device const float* loss [[buffer(0)]], device float* out [[buffer(1)]],
                                         constant MnnSoftmaxCrossEntropyParams& p [[buffer(2)]],
                                         uint tid [[thread_position_in_threadgroup]],
                                         uint ntg [[threads_per_threadgroup]],
                                         uint tgpos [[threadgroup_position_in_grid]],
                                         uint lane [[thread_index_in_simdgroup]],
                                         uint sg [[simdgroup_index_in_threadgroup]],
                                         uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  if (tgpos != 0) return;  // a larger grid than one threadgroup does nothing more
  const uint count = (uint)(p.n * p.s);
  // Kahan-compensated per-thread sums: the CPU sums in double.
  float acc = 0.0f, comp = 0.0f;
  for (uint i = tid; i < count; i += ntg) {
    const float y = loss[i] - comp;
    const float t = acc + y;
    comp = (t - acc) - y;
    acc = t;
  }
  const float total = mnn_threadgroup_sum(acc, partial, lane, sg, nsg);
  if (tid == 0) out[0] = p.reduction == MNN_REDUCTION_MEAN ? total / float(count) : total;
}

template <typename T>
inline void sce_backward(device const float* probs, device const int* labels, device const float* weights,
                         device const float* dloss, device T* dlogits, constant MnnSoftmaxCrossEntropyParams& p,
                         uint gid) {
  const uint s = (uint)p.s, c = (uint)p.c;
  if (gid >= (uint)p.n * c * s) return;
  const uint img = gid / (c * s), k = (gid / s) % c, pos = img * s + gid % s;
  const float ls = p.label_smoothing, keep = 1.0f - ls, spread = ls / float(c);
  float f = p.scale;
  if (p.dloss_per_position != 0u) f *= dloss[pos];
  if (p.has_weights != 0u) f *= weights[img];
  const float t = p.index_labels != 0u ? (labels[pos] == (int)k ? keep : 0.0f) + spread
                                       : keep * as_type<float>(labels[gid]) + spread;
  mnn_store(dlogits, gid, f * (probs[gid] - t));
}

kernel void softmax_cross_entropy_backward_float32(device const float* probs [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                   device const float* weights [[buffer(2)]],
                                                   device const float* dloss [[buffer(3)]], device float* dlogits [[buffer(4)]],
                                                   constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                   uint gid [[thread_position_in_grid]]) {
  sce_backward(probs, labels, weights, dloss, dlogits, p, gid);
}

kernel void softmax_cross_entropy_backward_float16(device const float* probs [[buffer(0)]], device const int* labels [[buffer(1)]],
                                                   device const float* weights [[buffer(2)]],
                                                   device const float* dloss [[buffer(3)]], device half* dlogits [[buffer(4)]],
                                                   constant MnnSoftmaxCrossEntropyParams& p [[buffer(5)]],
                                                   uint gid [[thread_position_in_grid]]) {
  sce_backward(probs, labels, weights, dloss, dlogits, p, gid);
}

// ------------------------------------------------------------------ generic loss

inline float mnn_term_weight(device const float* w, constant MnnLossParams& p, uint term, uint sample) {
  float v = p.weight;
  if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_SAMPLE) v *= w[sample];
  else if (p.weights_mode == MNN_LOSS_WEIGHTS_PER_TERM) v *= w[term];
  return v;
}

template <typename T>
inline void loss_elementwise(device const T* x, device const float* lab, device const float* w, device float* loss,
                             device float* grad, constant MnnLossParams& p, uint gid) {
  const uint cs = (uint)p.c * (uint)p.s;
  if (gid >= (uint)p.n * cs) return;
  const float t = mnn_smooth_target(p.type, lab[gid], p.label_smoothing, float(p.c));
  const MnnLossValue v = mnn_loss_elementwise(p.type, mnn_load(x, gid), t, p.delta, p.epsilon);
  const float wi = mnn_term_weight(w, p, gid, gid / cs);
  loss[gid] = wi * v.loss;
  grad[gid] = wi * v.grad;
}

kernel void loss_forward_float32(device const float* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                 device const float* w [[buffer(2)]], device float* loss [[buffer(3)]],
                                 device float* grad [[buffer(4)]], constant MnnLossParams& p [[buffer(5)]],
                                 uint gid [[thread_position_in_grid]]) {
  loss_elementwise(x, lab, w, loss, grad, p, gid);
}

kernel void loss_forward_float16(device const half* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                 device const float* w [[buffer(2)]], device float* loss [[buffer(3)]],
                                 device float* grad [[buffer(4)]], constant MnnLossParams& p [[buffer(5)]],
                                 uint gid [[thread_position_in_grid]]) {
  loss_elementwise(x, lab, w, loss, grad, p, gid);
}

// One simd-group per position: lanes stride over c and reduce with simd functions (no barriers).
template <typename T>
inline void loss_grouped(device const T* x, device const float* lab, device const float* w, device float* loss,
                         device float* grad, constant MnnLossParams& p, uint pos, uint lane, uint width) {
  if (pos >= (uint)(p.n * p.s)) return;  // the whole simd-group leaves together
  const uint s = (uint)p.s, c = (uint)p.c;
  const uint img = pos / s;
  const uint base = img * c * s + pos % s;
  const float wq = mnn_term_weight(w, p, pos, img);
  const float ls = p.label_smoothing, fc = float(c);
  float acc = 0.0f;
  if (p.type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY) {
    float m = -INFINITY;
    bool nan = false;
    for (uint k = lane; k < c; k += width) {
      const float v = mnn_load(x, base + k * s);
      nan = nan || isnan(v);
      m = fmax(m, v);
    }
    m = simd_max(m);
    if (simd_max(nan ? 1.0f : 0.0f) > 0.0f) m = NAN;  // fmax drops NaN: the whole position turns NaN
    float sum = 0.0f;
    for (uint k = lane; k < c; k += width) sum += exp(mnn_load(x, base + k * s) - m);
    const float lse = m + log(simd_sum(sum));
    float tsum = 0.0f;
    for (uint k = lane; k < c; k += width) {
      const uint i = base + k * s;
      const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[i], ls, fc);
      tsum += t;
      if (t != 0.0f) acc -= t * (mnn_load(x, i) - lse);
    }
    tsum = simd_sum(tsum);
    for (uint k = lane; k < c; k += width) {
      const uint i = base + k * s;
      const float t = mnn_smooth_target(MNN_LOSS_SOFTMAX_CROSS_ENTROPY, lab[i], ls, fc);
      grad[i] = wq * (exp(mnn_load(x, i) - lse) * tsum - t);
    }
  } else {  // cosine distance: 1 - sum_c y t
    for (uint k = lane; k < c; k += width) {
      const uint i = base + k * s;
      const float y = mnn_load(x, i);
      acc -= y * lab[i];
      grad[i] = isnan(y) ? y : -wq * lab[i];
    }
    if (lane == 0) acc += 1.0f;
  }
  acc = simd_sum(acc);
  if (lane == 0) loss[pos] = wq * acc;
}

kernel void loss_forward_grouped_float32(device const float* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                         device const float* w [[buffer(2)]], device float* loss [[buffer(3)]],
                                         device float* grad [[buffer(4)]], constant MnnLossParams& p [[buffer(5)]],
                                         uint tgpos [[threadgroup_position_in_grid]],
                                         uint ntg [[threads_per_threadgroup]],
                                         uint lane [[thread_index_in_simdgroup]],
                                         uint sg [[simdgroup_index_in_threadgroup]],
                                         uint nsg [[simdgroups_per_threadgroup]],
                                         uint simd_width [[threads_per_simdgroup]]) {
  // The last simd-group of a threadgroup that is not a multiple of the width has fewer lanes.
  const uint width = min(simd_width, ntg - sg * simd_width);
  loss_grouped(x, lab, w, loss, grad, p, tgpos * nsg + sg, lane, width);
}

kernel void loss_forward_grouped_float16(device const half* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                         device const float* w [[buffer(2)]], device float* loss [[buffer(3)]],
                                         device float* grad [[buffer(4)]], constant MnnLossParams& p [[buffer(5)]],
                                         uint tgpos [[threadgroup_position_in_grid]],
                                         uint ntg [[threads_per_threadgroup]],
                                         uint lane [[thread_index_in_simdgroup]],
                                         uint sg [[simdgroup_index_in_threadgroup]],
                                         uint nsg [[simdgroups_per_threadgroup]],
                                         uint simd_width [[threads_per_simdgroup]]) {
  const uint width = min(simd_width, ntg - sg * simd_width);
  loss_grouped(x, lab, w, loss, grad, p, tgpos * nsg + sg, lane, width);
}

// One threadgroup folds every term: a single pass keeps the result independent of the grid.
kernel void loss_reduce(device const float* loss [[buffer(0)]], device float* out [[buffer(1)]],
                        constant MnnLossParams& p [[buffer(2)]],
                        uint tid [[thread_position_in_threadgroup]],
                        uint ntg [[threads_per_threadgroup]],
                        uint tgpos [[threadgroup_position_in_grid]],
                        uint lane [[thread_index_in_simdgroup]],
                        uint sg [[simdgroup_index_in_threadgroup]],
                        uint nsg [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[32];
  if (tgpos != 0) return;  // a larger grid than one threadgroup does nothing more
  // Kahan-compensated per-thread sums: the CPU sums in double.
  float acc = 0.0f, comp = 0.0f;
  for (uint i = tid; i < p.count; i += ntg) {
    const float y = loss[i] - comp;
    const float t = acc + y;
    comp = (t - acc) - y;
    acc = t;
  }
  const float total = mnn_threadgroup_sum(acc, partial, lane, sg, nsg);
  if (tid == 0) out[0] = total * p.scale;
}

template <typename T>
inline void loss_backward_impl(device const float* grad, device const float* dloss, device T* out,
                               constant MnnLossParams& p, uint gid) {
  const uint cs = (uint)p.c * (uint)p.s;
  if (gid >= (uint)p.n * cs) return;
  float f = p.scale;
  if (p.dloss_per_term != 0u)
    f *= dloss[mnn_loss_grouped(p.type) ? (gid / cs) * (uint)p.s + gid % (uint)p.s : gid];
  mnn_store(out, gid, f * grad[gid]);
}

kernel void loss_backward_float32(device const float* grad [[buffer(0)]], device const float* dloss [[buffer(1)]],
                                  device float* out [[buffer(2)]], constant MnnLossParams& p [[buffer(3)]],
                                  uint gid [[thread_position_in_grid]]) {
  loss_backward_impl(grad, dloss, out, p, gid);
}

kernel void loss_backward_float16(device const float* grad [[buffer(0)]], device const float* dloss [[buffer(1)]],
                                  device half* out [[buffer(2)]], constant MnnLossParams& p [[buffer(3)]],
                                  uint gid [[thread_position_in_grid]]) {
  loss_backward_impl(grad, dloss, out, p, gid);
}

// ------------------------------------------------------------------ YOLO loss

template <typename T>
inline void yolo_impl(device const T* x, device const float* lab, device float* loss, device float* grad,
                      constant MnnYoloLossParams& p, uint gid) {
  const uint s = (uint)p.s, anchors = (uint)p.anchors;
  if (gid >= (uint)p.n * anchors * s) return;
  mnn_yolo_anchor(x, lab, loss, grad, p, int(gid / (s * anchors)), int((gid / s) % anchors), int(gid % s));
}

kernel void yolo_loss_forward_float32(device const float* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                      device float* loss [[buffer(2)]], device float* grad [[buffer(3)]],
                                      constant MnnYoloLossParams& p [[buffer(4)]],
                                      uint gid [[thread_position_in_grid]]) {
  yolo_impl(x, lab, loss, grad, p, gid);
}

kernel void yolo_loss_forward_float16(device const half* x [[buffer(0)]], device const float* lab [[buffer(1)]],
                                      device float* loss [[buffer(2)]], device float* grad [[buffer(3)]],
                                      constant MnnYoloLossParams& p [[buffer(4)]],
                                      uint gid [[thread_position_in_grid]]) {
  yolo_impl(x, lab, loss, grad, p, gid);
}
