#include "metalnn/ops/loss.h"

#include <cmath>
#include <cstring>

#include "metalnn/backend/cpu/loss.h"
#include "metalnn/backend/cpu/storage.h"
#include "metalnn/backend/cuda/loss.h"
#ifdef METALNN_HAS_CUDA
#include "metalnn/backend/cuda/graph_capture.h"
#include "metalnn/backend/cuda/labels.h"
#endif
#include "metalnn/backend/metal/loss.h"
#include "metalnn/core/copy.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"
#include "metalnn/ops/softmax.h"

namespace metalnn {
namespace {

constexpr const char* kReductions[] = {"none", "sum", "mean"};

template <class T>
void check_indices(const char* op, const Tensor& host, int64_t c) {
  const T* src = host.data<T>();
  int64_t n = host.numel();
  for (int64_t i = 0; i < n; ++i)
    if (src[i] < 0 || src[i] >= c)
      fail(ErrorKind::Value, op, "labels must be class indices in [0, ", c, "), got ", (int64_t)src[i],
           " at flat index ", i);
}

// Copies class indices into int32, after checking every one lies in [0, c).
template <class T>
Tensor checked_indices(const char* op, const Tensor& labels, int64_t c) {
#ifdef METALNN_HAS_CUDA
  if (labels.device().type == DeviceType::cuda) {
    // Converted on the device, so a CUDA graph captured once converts each replayed batch;
    // checked on the host copy (registered with the capture: before every replay).
    auto check = [op, c](const Tensor& host) { check_indices<T>(op, host, c); };
    if (!cuda::record_input_check(labels, check)) check(to_host(labels, op));
    return cuda::labels_to_int32(labels, op);
  }
#endif
  // Checked on the host.
  Tensor host = to_host(labels, op);
  check_indices<T>(op, host, c);
  const T* src = host.data<T>();
  const int64_t n = labels.numel();
  Tensor out = Tensor::empty(labels.shape(), DType::int32, host.device());
  int32_t* dst = out.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) dst[i] = (int32_t)src[i];
  return out.device() == labels.device() ? out : to_device(out, labels.device(), op);
}

// A float32 copy of probability labels (the state must not change with the caller's array).
Tensor float32_copy(const Tensor& src) {
#ifdef METALNN_HAS_CUDA
  if (src.device().type == DeviceType::cuda) return cuda::labels_to_float32(src, "softmax_cross_entropy_forward");
#endif
  Tensor t = to_host(src, "softmax_cross_entropy_forward");
  Tensor out = Tensor::empty(t.shape(), DType::float32, t.device());
  if (t.dtype() == DType::float32) std::memcpy(out.raw(), t.raw(), t.nbytes());
  else half_to_float_n(t.data<uint16_t>(), out.data<float>(), (size_t)t.numel());
  return out.device() == src.device() ? out : to_device(out, src.device(), "softmax_cross_entropy_forward");
}

MnnSoftmaxCrossEntropyParams make_params(const MnnSoftmaxParams& sp, const SoftmaxCrossEntropyState& s) {
  MnnSoftmaxCrossEntropyParams p{};
  p.n = sp.n;
  p.c = sp.c;
  p.s = sp.s;
  p.index_labels = s.index_labels ? 1u : 0u;
  p.has_weights = s.weights.defined() ? 1u : 0u;
  p.reduction = (uint32_t)s.desc.reduction;
  p.label_smoothing = s.desc.label_smoothing;
  p.scale = 1.f;
  return p;
}

}  // namespace

const char* reduction_name(MnnReduction r) { return (unsigned)r < 3 ? kReductions[r] : "?"; }

SoftmaxCrossEntropyDescriptor SoftmaxCrossEntropyDescriptor::make(const std::string& reduction,
                                                                  double label_smoothing, const char* op) {
  SoftmaxCrossEntropyDescriptor d;
  bool found = false;
  for (uint32_t r = 0; r < 3; ++r)
    if (reduction == kReductions[r]) {
      d.reduction = (MnnReduction)r;
      found = true;
    }
  if (!found)
    fail(ErrorKind::Value, op, "reduction: unknown reduction '", reduction, "' (expected none, sum or mean)");
  check::finite(op, "label_smoothing", label_smoothing);
  check::in_range(op, "label_smoothing", label_smoothing, 0.0, 1.0);
  d.label_smoothing = (float)label_smoothing;
  return d;
}

std::pair<Tensor, std::shared_ptr<SoftmaxCrossEntropyState>> softmax_cross_entropy_forward(
    const Tensor& logits, const Tensor& labels, const Tensor& weights, const SoftmaxCrossEntropyDescriptor& desc) {
  const char* op = "softmax_cross_entropy_forward";
  check::floating(op, "logits", logits);
  MnnSoftmaxParams sp = softmax_params(op, "logits", logits, true);
  Shape loss_shape = {logits.dim(0)};
  if (logits.ndim() == 4) loss_shape = {logits.dim(0), logits.dim(2), logits.dim(3)};

  auto state = std::make_shared<SoftmaxCrossEntropyState>();
  check::same_device(op, "labels", labels, "logits", logits);
  if (labels.dtype() == DType::int32 || labels.dtype() == DType::int64) {
    if (labels.shape() != loss_shape)
      fail(ErrorKind::Value, op, "labels: class indices must have shape ", shape_str(loss_shape), " for logits ",
           shape_str(logits.shape()), ", got ", shape_str(labels.shape()));
    state->index_labels = true;
    state->labels = labels.dtype() == DType::int32 ? checked_indices<int32_t>(op, labels, sp.c)
                                                   : checked_indices<int64_t>(op, labels, sp.c);
  } else if (is_floating(labels.dtype())) {
    if (labels.shape() != logits.shape())
      fail(ErrorKind::Value, op, "labels: probabilities must have the logits' shape ", shape_str(logits.shape()),
           ", got ", shape_str(labels.shape()));
    state->index_labels = false;
    state->labels = float32_copy(labels);
  } else {
    fail(ErrorKind::Type, op, "labels must be int32/int64 class indices or float32/float16 probabilities, got ",
         dtype_name(labels.dtype()));
  }
  if (weights.defined()) {
    check::dtype(op, "weights", weights, DType::float32);
    check::shape(op, "weights", weights, {logits.dim(0)});
    check::same_device(op, "weights", weights, "logits", logits);
    state->weights = float32_copy(weights);
  }
  state->desc = desc;
  state->logits_dtype = logits.dtype();
  state->loss_shape = loss_shape;
  state->probs = Tensor::empty(logits.shape(), DType::float32, logits.device());

  auto p = make_params(sp, *state);
  Tensor per_position = Tensor::empty(loss_shape, DType::float32, logits.device());
  Tensor loss = desc.reduction == MNN_REDUCTION_NONE ? per_position
                                                     : Tensor::empty({}, DType::float32, logits.device());
  dispatch(op, logits.device(), [&] {
    cpu::softmax_cross_entropy_forward(logits, state->labels, state->weights, state->probs, per_position, p);
    if (desc.reduction != MNN_REDUCTION_NONE) *loss.data<float>() = cpu::reduce_loss(per_position, p);
  }, [&] {
    // The GPU reduces into the one-element loss itself (its value is unknown while encoding).
    metal::softmax_cross_entropy_forward(logits, state->labels, state->weights, state->probs, per_position, p);
    if (desc.reduction != MNN_REDUCTION_NONE) metal::reduce_loss(per_position, loss, p);
  }, cuda_kernel([&] {
    cuda::softmax_cross_entropy_forward(logits, state->labels, state->weights, state->probs, per_position, loss, p);
  }));
  return {loss, state};
}

Tensor softmax_cross_entropy_backward(const std::shared_ptr<State>& state, const Tensor& dloss) {
  const char* op = "softmax_cross_entropy_backward";
  const auto& s = state_as<SoftmaxCrossEntropyState>(state, op, "softmax_cross_entropy_forward");
  check::floating(op, "dloss", dloss);
  check::same_device(op, "dloss", dloss, "state", s.probs);
  bool per_position = false;
  if (dloss.ndim() != 0) {
    if (s.desc.reduction != MNN_REDUCTION_NONE)
      fail(ErrorKind::Value, op, "dloss must be a scalar for reduction '", reduction_name(s.desc.reduction),
           "', got shape ", shape_str(dloss.shape()));
    check::shape(op, "dloss", dloss, s.loss_shape);
    per_position = true;
  }
  MnnSoftmaxParams sp = softmax_params(op, "state", s.probs, true);
  auto p = make_params(sp, s);
  p.dloss_per_position = per_position ? 1u : 0u;
  float scalar = 1.f;
  // A CUDA kernel reads a scalar dloss itself (no wait for the device here).
  bool on_cuda = dloss.device().type == DeviceType::cuda;
  if (!per_position && !on_cuda)
    scalar = dloss.dtype() == DType::float32 ? *dloss.data<float>() : half_to_float(*dloss.data<uint16_t>());
  double positions = (double)sp.n * sp.s;
  p.scale = s.desc.reduction == MNN_REDUCTION_MEAN ? (float)(scalar / positions) : scalar;
  Tensor dlogits = Tensor::empty(s.probs.shape(), s.logits_dtype, s.probs.device());
  dispatch(op, s.probs.device(), [&] {
    cpu::softmax_cross_entropy_backward(s.probs, s.labels, s.weights, dloss, dlogits, p);
  }, [&] {
    // The Metal kernel reads a per-position dloss as float32; shared storage lets the host convert.
    Tensor d = dloss;
    if (per_position && dloss.dtype() != DType::float32) {
      d = Tensor::empty(dloss.shape(), DType::float32, dloss.device());
      half_to_float_n(dloss.data<uint16_t>(), d.data<float>(), (size_t)dloss.numel());
    }
    metal::softmax_cross_entropy_backward(s.probs, s.labels, s.weights, d, dlogits, p);
  }, cuda_kernel([&] { cuda::softmax_cross_entropy_backward(s.probs, s.labels, s.weights, dloss, dlogits, p); }));
  return dlogits;
}

}  // namespace metalnn

// ------------------------------------------------------------------ generic loss (MPSCNNLoss)

namespace metalnn {
namespace {

constexpr const char* kLossTypes[] = {"mean_absolute_error",   "mean_squared_error",
                                      "softmax_cross_entropy", "sigmoid_cross_entropy",
                                      "categorical_cross_entropy", "hinge",
                                      "huber",                 "cosine_distance",
                                      "log",                   "kullback_leibler_divergence"};
constexpr const char* kLossReductions[] = {"none", "sum", "mean", "sum_by_non_zero_weights"};

// (n, c, s) of predictions (N, C, ...), checked.
void loss_view(const char* op, const Tensor& x, int32_t& n, int32_t& c, int32_t& s) {
  if (x.ndim() < 2)
    fail(ErrorKind::Value, op, "predictions must be (N, C) or (N, C, ...) with at least 2 dimensions, got shape ",
         shape_str(x.shape()));
  check::non_empty(op, "predictions", x);
  int64_t rest = 1;
  for (int i = 2; i < x.ndim(); ++i) rest *= x.dim(i);
  if (x.numel() > INT32_MAX)
    fail(ErrorKind::Value, op, "predictions are too large (more than 2^31 - 1 elements), got shape ",
         shape_str(x.shape()));
  n = (int32_t)x.dim(0);
  c = (int32_t)x.dim(1);
  s = (int32_t)rest;
}

// A float32 copy of a float16 tensor; float32 tensors pass through (kernels only read them).
Tensor as_float32(const Tensor& t, const char* op) {
  if (t.dtype() == DType::float32) return t;
  Tensor host = to_host(t, op);
  Tensor out = Tensor::empty(t.shape(), DType::float32, host.device());
  half_to_float_n(host.data<uint16_t>(), out.data<float>(), (size_t)t.numel());
  return out.device() == t.device() ? out : to_device(out, t.device(), op);
}

// One-hot float32 (n, c, s) targets from checked class indices (n, s).
template <class T>
Tensor one_hot(const char* op, const Tensor& labels, int32_t n, int32_t c, int32_t s, const Shape& shape) {
  Tensor host = to_host(labels, op);
  const T* src = host.data<T>();
  const int64_t count = labels.numel();
  for (int64_t i = 0; i < count; ++i)
    if (src[i] < 0 || src[i] >= c)
      fail(ErrorKind::Value, op, "labels must be class indices in [0, ", c, "), got ", (int64_t)src[i],
           " at flat index ", i);
  Tensor out = Tensor::zeros(shape, DType::float32, host.device());
  float* dst = out.data<float>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t img = i / s, j = i % s;
    dst[(img * c + (int64_t)src[i]) * s + j] = 1.f;
  }
  return out.device() == labels.device() ? out : to_device(out, labels.device(), op);
}

// Number of loss terms whose weight (per sample or per term, times the scalar weight) is non-zero.
double non_zero_weights(const char* op, const Tensor& weights, const MnnLossParams& p, int64_t terms) {
  if (p.weight == 0.f) return 0.0;
  if (!weights.defined()) return (double)terms;
  Tensor host = to_host(weights, op);
  const float* w = host.data<float>();
  int64_t nz = 0;
  for (int64_t i = 0; i < weights.numel(); ++i) nz += w[i] != 0.f;
  const int64_t per = p.weights_mode == MNN_LOSS_WEIGHTS_PER_SAMPLE ? terms / p.n : 1;
  return (double)nz * (double)per;
}

double reduction_divisor(MnnReduction r, double terms, double non_zero) {
  if (r == MNN_REDUCTION_MEAN) return terms;
  if (r == MNN_REDUCTION_SUM_BY_NON_ZERO_WEIGHTS) return non_zero;
  return 1.0;
}

// Writes the reduced loss (float32 scalar) from the per-term losses on the tensor's device.
void reduce_into(const char* op, const Tensor& terms, const Tensor& out, MnnLossParams p) {
  dispatch(op, terms.device(), [&] { *out.data<float>() = cpu::reduce_loss_terms(terms, p); },
           [&] { metal::reduce_loss_terms(terms, out, p); },
           cuda_kernel([&] { cuda::reduce_loss_terms(terms, out, p); }));
}

MnnReduction reduction_of(const std::string& name, const char* op, int count) {
  for (int r = 0; r < count; ++r)
    if (name == kLossReductions[r]) return (MnnReduction)r;
  fail(ErrorKind::Value, op, "reduction: unknown reduction '", name,
       count == 4 ? "' (expected none, sum, mean or sum_by_non_zero_weights)" : "' (expected none, sum or mean)");
}

}  // namespace

const char* loss_type_name(uint32_t type) { return type < MNN_LOSS_TYPE_COUNT ? kLossTypes[type] : "?"; }

MnnLossType parse_loss_type(const std::string& name, const char* op, const char* arg) {
  for (uint32_t t = 0; t < MNN_LOSS_TYPE_COUNT; ++t)
    if (name == kLossTypes[t]) return (MnnLossType)t;
  fail(ErrorKind::Value, op, arg, ": unknown loss type '", name,
       "' (expected mean_absolute_error, mean_squared_error, softmax_cross_entropy, sigmoid_cross_entropy, "
       "categorical_cross_entropy, hinge, huber, cosine_distance, log or kullback_leibler_divergence)");
}

MnnReduction parse_reduction(const std::string& name, const char* op) { return reduction_of(name, op, 4); }

bool loss_per_position(uint32_t type) {
  return type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY || type == MNN_LOSS_COSINE_DISTANCE;
}

MnnLossTerm make_loss_term(const std::string& type, double delta, double epsilon, double label_smoothing,
                           const char* op, const char* arg) {
  MnnLossTerm t{};
  t.type = parse_loss_type(type, op, arg);
  check::finite(op, "delta", delta);
  check::in_range(op, "delta", delta, 0.0, 3.0e38, true);
  check::finite(op, "epsilon", epsilon);
  check::in_range(op, "epsilon", epsilon, 0.0, 1.0);
  check::finite(op, "label_smoothing", label_smoothing);
  check::in_range(op, "label_smoothing", label_smoothing, 0.0, 1.0);
  if (label_smoothing != 0.0 && t.type != MNN_LOSS_SOFTMAX_CROSS_ENTROPY && t.type != MNN_LOSS_SIGMOID_CROSS_ENTROPY)
    fail(ErrorKind::Value, op, "label_smoothing applies to softmax_cross_entropy and sigmoid_cross_entropy only, not ",
         type, " (", arg, ")");
  t.delta = (float)delta;
  t.epsilon = (float)epsilon;
  t.label_smoothing = (float)label_smoothing;
  return t;
}

LossDescriptor LossDescriptor::make(const std::string& type, const std::string& reduction, double weight,
                                    double label_smoothing, double delta, double epsilon, const char* op) {
  LossDescriptor d;
  MnnLossTerm t = make_loss_term(type, delta, epsilon, label_smoothing, op, "loss_type");
  d.type = (MnnLossType)t.type;
  d.reduction = parse_reduction(reduction, op);
  check::finite(op, "weight", weight);
  d.weight = (float)weight;
  d.label_smoothing = t.label_smoothing;
  d.delta = t.delta;
  d.epsilon = t.epsilon;
  return d;
}

std::pair<Tensor, std::shared_ptr<LossState>> loss_forward(const Tensor& predictions, const Tensor& labels,
                                                           const Tensor& weights, const LossDescriptor& desc) {
  const char* op = "loss_forward";
  check::floating(op, "predictions", predictions);
  MnnLossParams p{};
  loss_view(op, predictions, p.n, p.c, p.s);
  p.type = desc.type;
  p.weight = desc.weight;
  p.label_smoothing = desc.label_smoothing;
  p.delta = desc.delta;
  p.epsilon = desc.epsilon;
  const bool per_position = loss_per_position(desc.type);
  Shape loss_shape = predictions.shape();
  if (per_position) loss_shape.erase(loss_shape.begin() + 1);
  Shape index_shape = predictions.shape();
  index_shape.erase(index_shape.begin() + 1);

  check::same_device(op, "labels", labels, "predictions", predictions);
  Tensor targets;
  if (labels.dtype() == DType::int32 || labels.dtype() == DType::int64) {
    if (desc.type != MNN_LOSS_SOFTMAX_CROSS_ENTROPY && desc.type != MNN_LOSS_CATEGORICAL_CROSS_ENTROPY)
      fail(ErrorKind::Type, op, "labels: class indices are for softmax_cross_entropy and categorical_cross_entropy; ",
           loss_type_name(desc.type), " takes float labels of the predictions' shape");
    if (labels.shape() != index_shape)
      fail(ErrorKind::Value, op, "labels: class indices must have shape ", shape_str(index_shape),
           " for predictions ", shape_str(predictions.shape()), ", got ", shape_str(labels.shape()));
    targets = labels.dtype() == DType::int32
                  ? one_hot<int32_t>(op, labels, p.n, p.c, p.s, predictions.shape())
                  : one_hot<int64_t>(op, labels, p.n, p.c, p.s, predictions.shape());
  } else if (labels.dtype() == DType::float32 || labels.dtype() == DType::float16) {
    if (labels.shape() != predictions.shape())
      fail(ErrorKind::Value, op, "labels must have the predictions' shape ", shape_str(predictions.shape()),
           ", got ", shape_str(labels.shape()));
    targets = as_float32(labels, op);
  } else {
    fail(ErrorKind::Type, op, "labels must be float32/float16 (or int32/int64 class indices), got ",
         dtype_name(labels.dtype()));
  }
  const int64_t terms = per_position ? (int64_t)p.n * p.s : predictions.numel();
  p.weights_mode = MNN_LOSS_WEIGHTS_NONE;
  if (weights.defined()) {
    check::dtype(op, "weights", weights, DType::float32);
    check::same_device(op, "weights", weights, "predictions", predictions);
    if (weights.shape() == Shape{predictions.dim(0)})
      p.weights_mode = MNN_LOSS_WEIGHTS_PER_SAMPLE;
    else if (weights.shape() == loss_shape)
      p.weights_mode = MNN_LOSS_WEIGHTS_PER_TERM;
    else
      fail(ErrorKind::Value, op, "weights must have shape (", predictions.dim(0), ",) or the loss's shape ",
           shape_str(loss_shape), ", got ", shape_str(weights.shape()));
  }
  auto state = std::make_shared<LossState>();
  state->loss_shape = loss_shape;
  state->reduction = desc.reduction;
  state->dtype = predictions.dtype();
  const double nz = desc.reduction == MNN_REDUCTION_SUM_BY_NON_ZERO_WEIGHTS ? non_zero_weights(op, weights, p, terms)
                                                                           : 0.0;
  state->divisor = reduction_divisor(desc.reduction, (double)terms, nz);
  state->grad = Tensor::empty(predictions.shape(), DType::float32, predictions.device());
  p.count = (uint32_t)terms;
  p.scale = state->divisor > 0.0 ? (float)(1.0 / state->divisor) : 0.f;
  state->params = p;

  Tensor per_term = Tensor::empty(loss_shape, DType::float32, predictions.device());
  dispatch(op, predictions.device(), [&] { cpu::loss_forward(predictions, targets, weights, per_term, state->grad, p); },
           [&] { metal::loss_forward(predictions, targets, weights, per_term, state->grad, p); },
           cuda_kernel([&] { cuda::loss_forward(predictions, targets, weights, per_term, state->grad, p); }));
  if (desc.reduction == MNN_REDUCTION_NONE) return {per_term, state};
  Tensor loss = Tensor::empty({}, DType::float32, predictions.device());
  reduce_into(op, per_term, loss, p);
  return {loss, state};
}

Tensor loss_backward(const std::shared_ptr<State>& state, const Tensor& dloss_arg) {
  const char* op = "loss_backward";
  const auto& s = state_as<LossState>(state, op, "loss_forward or yolo_loss_forward");
  check::floating(op, "dloss", dloss_arg);
  // A host scalar (a Python number) goes to the state's device: one value, copied once.
  Tensor dloss = dloss_arg;
  if (dloss.ndim() == 0 && dloss.device().type == DeviceType::cpu && s.grad.device().type != DeviceType::cpu)
    dloss = to_device(dloss, s.grad.device(), op);
  check::same_device(op, "dloss", dloss, "state", s.grad);
  bool per_term = false;
  if (dloss.ndim() != 0) {
    if (s.reduction != MNN_REDUCTION_NONE)
      fail(ErrorKind::Value, op, "dloss must be a scalar for reduction '", kLossReductions[s.reduction],
           "', got shape ", shape_str(dloss.shape()));
    check::shape(op, "dloss", dloss, s.loss_shape);
    per_term = true;
  }
  MnnLossParams p = s.params;
  p.dloss_per_term = per_term ? 1u : 0u;
  p.count = (uint32_t)s.grad.numel();
  const double reduce_scale = s.divisor > 0.0 ? 1.0 / s.divisor : 0.0;
  p.scale = (float)reduce_scale;
  // CPU and Metal fold a scalar dloss into the scale; a CUDA kernel reads it on the device.
  const bool on_cuda = dloss.device().type == DeviceType::cuda;
  if (!per_term && !on_cuda) {
    const double d = dloss.dtype() == DType::float32 ? *dloss.data<float>() : half_to_float(*dloss.data<uint16_t>());
    p.scale = (float)(reduce_scale * d);
  }
  Tensor dpred = Tensor::empty(s.grad.shape(), s.dtype, s.grad.device());
  dispatch(op, s.grad.device(), [&] { cpu::loss_backward(s.grad, dloss, dpred, p); },
           [&] {
             // The Metal kernel reads a per-term dloss as float32; shared storage lets the host convert.
             Tensor d = per_term ? as_float32(dloss, op) : Tensor();
             metal::loss_backward(s.grad, d, dpred, p);
           },
           cuda_kernel([&] { cuda::loss_backward(s.grad, dloss, dpred, p); }));
  return dpred;
}

YoloLossDescriptor YoloLossDescriptor::make(const std::vector<std::pair<double, double>>& anchors, int64_t classes,
                                            const MnnLossTerm (&terms)[4], const double (&scales)[5],
                                            double min_iou_for_object_presence, double max_iou_for_object_absence,
                                            bool rescore, const std::string& reduction, const char* op) {
  YoloLossDescriptor d;
  MnnYoloLossParams& p = d.params;
  if (anchors.empty() || anchors.size() > MNN_YOLO_MAX_ANCHORS)
    fail(ErrorKind::Value, op, "anchor_boxes: expected 1 to ", MNN_YOLO_MAX_ANCHORS, " (width, height) pairs, got ",
         anchors.size());
  for (size_t i = 0; i < anchors.size(); ++i) {
    const auto [w, h] = anchors[i];
    if (!(w > 0.0) || !(h > 0.0) || !std::isfinite(w) || !std::isfinite(h))
      fail(ErrorKind::Value, op, "anchor_boxes: widths and heights must be finite and > 0, got (", w, ", ", h,
           ") for anchor ", i);
    p.anchor_w[i] = (float)w;
    p.anchor_h[i] = (float)h;
  }
  p.anchors = (int32_t)anchors.size();
  check::positive(op, "num_classes", classes);
  if (classes > 65536) fail(ErrorKind::Value, op, "num_classes must be at most 65536, got ", classes);
  p.classes = (int32_t)classes;
  const char* names[4] = {"xy_loss", "wh_loss", "confidence_loss", "classes_loss"};
  for (int i = 0; i < 4; ++i) {
    const bool grouped = loss_per_position(terms[i].type);
    if (terms[i].type >= MNN_LOSS_TYPE_COUNT || (grouped && (i < 3 || terms[i].type == MNN_LOSS_COSINE_DISTANCE)))
      fail(ErrorKind::Value, op, names[i], ": ", loss_type_name(terms[i].type),
           " is not an elementwise loss", i == 3 ? " (classes take softmax_cross_entropy or an elementwise loss)" : "");
  }
  p.xy = terms[0];
  p.wh = terms[1];
  p.confidence = terms[2];
  p.class_term = terms[3];
  const char* scale_names[5] = {"scale_xy", "scale_wh", "scale_no_object", "scale_object", "scale_class"};
  for (int i = 0; i < 5; ++i) {
    check::finite(op, scale_names[i], scales[i]);
    check::in_range(op, scale_names[i], scales[i], 0.0, 3.0e38);
  }
  p.scale_xy = (float)scales[0];
  p.scale_wh = (float)scales[1];
  p.scale_no_object = (float)scales[2];
  p.scale_object = (float)scales[3];
  p.scale_class = (float)scales[4];
  check::finite(op, "min_iou_for_object_presence", min_iou_for_object_presence);
  check::in_range(op, "min_iou_for_object_presence", min_iou_for_object_presence, 0.0, 1.0);
  check::finite(op, "max_iou_for_object_absence", max_iou_for_object_absence);
  check::in_range(op, "max_iou_for_object_absence", max_iou_for_object_absence, 0.0, 1.0);
  p.min_iou_for_object_presence = (float)min_iou_for_object_presence;
  p.max_iou_for_object_absence = (float)max_iou_for_object_absence;
  p.rescore = rescore ? 1u : 0u;
  d.reduction = reduction_of(reduction, op, 3);
  return d;
}

std::pair<Tensor, std::shared_ptr<LossState>> yolo_loss_forward(const Tensor& predictions, const Tensor& labels,
                                                                const YoloLossDescriptor& desc) {
  const char* op = "yolo_loss_forward";
  check::floating(op, "predictions", predictions);
  check::rank(op, "predictions", predictions, 4, "(N, anchors * (5 + classes), H, W)");
  MnnYoloLossParams p = desc.params;
  int32_t n, c, s;
  loss_view(op, predictions, n, c, s);
  if ((int64_t)c != (int64_t)p.anchors * (5 + p.classes))
    fail(ErrorKind::Value, op, "predictions must have anchors * (5 + classes) = ", p.anchors, " * ", 5 + p.classes,
         " = ", (int64_t)p.anchors * (5 + p.classes), " channels, got ", c);
  check::same_device(op, "labels", labels, "predictions", predictions);
  check::dtype_in(op, "labels", labels, {DType::float32, DType::float16});
  check::shape(op, "labels", labels, predictions.shape());
  p.n = n;
  p.s = s;
  auto state = std::make_shared<LossState>();
  state->op = "yolo_loss_forward";
  state->loss_shape = predictions.shape();
  state->reduction = desc.reduction;
  state->dtype = predictions.dtype();
  state->divisor = reduction_divisor(desc.reduction, (double)predictions.numel(), 0.0);
  state->grad = Tensor::empty(predictions.shape(), DType::float32, predictions.device());
  MnnLossParams lp{};
  lp.n = n;
  lp.c = c;
  lp.s = s;
  lp.type = MNN_LOSS_MEAN_SQUARED_ERROR;  // any elementwise type: one term per element
  lp.weight = 1.f;
  lp.count = (uint32_t)predictions.numel();
  lp.scale = (float)(1.0 / state->divisor);
  state->params = lp;
  Tensor targets = as_float32(labels, op);
  Tensor per_element = Tensor::empty(predictions.shape(), DType::float32, predictions.device());
  dispatch(op, predictions.device(), [&] { cpu::yolo_loss_forward(predictions, targets, per_element, state->grad, p); },
           [&] { metal::yolo_loss_forward(predictions, targets, per_element, state->grad, p); },
           cuda_kernel([&] { cuda::yolo_loss_forward(predictions, targets, per_element, state->grad, p); }));
  if (desc.reduction == MNN_REDUCTION_NONE) return {per_element, state};
  Tensor loss = Tensor::empty({}, DType::float32, predictions.device());
  reduce_into(op, per_element, loss, lp);
  return {loss, state};
}

}  // namespace metalnn
