#include "metalnn/ops/loss.h"

#include <cmath>
#include <cstring>

#include "metalnn/backend/cpu/loss.h"
#include "metalnn/backend/cpu/storage.h"
#include "metalnn/backend/cuda/loss.h"
#include "metalnn/backend/metal/loss.h"
#include "metalnn/core/copy.h"
#include "metalnn/ops/check.h"
#include "metalnn/ops/dispatch.h"
#include "metalnn/ops/softmax.h"

namespace metalnn {
namespace {

constexpr const char* kReductions[] = {"none", "sum", "mean"};

// Copies class indices into int32, after checking every one lies in [0, c).
template <class T>
Tensor checked_indices(const char* op, const Tensor& labels, int64_t c) {
  // Checked on the host: device labels (CUDA) come over and the copy goes back.
  Tensor host = to_host(labels, op);
  const T* src = host.data<T>();
  int64_t n = labels.numel();
  for (int64_t i = 0; i < n; ++i)
    if (src[i] < 0 || src[i] >= c)
      fail(ErrorKind::Value, op, "labels must be class indices in [0, ", c, "), got ", (int64_t)src[i],
           " at flat index ", i);
  Tensor out = Tensor::empty(labels.shape(), DType::int32, host.device());
  int32_t* dst = out.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) dst[i] = (int32_t)src[i];
  return out.device() == labels.device() ? out : to_device(out, labels.device(), op);
}

// A float32 copy of probability labels (the state must not change with the caller's array).
Tensor float32_copy(const Tensor& src) {
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
