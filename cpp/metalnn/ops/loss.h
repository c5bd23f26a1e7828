// Losses (MPSCNNLoss): softmax cross-entropy with its own API (label smoothing, per-sample
// weights, none / sum / mean), the generic loss of every MPSCNNLossType (loss_forward /
// loss_backward) and the YOLO detection loss (MPSCNNYOLOLoss); forward and gradient.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/loss_params.h"
#include "metalnn/core/state.h"
#include "metalnn/core/tensor.h"

namespace metalnn {

struct SoftmaxCrossEntropyDescriptor {
  MnnReduction reduction = MNN_REDUCTION_MEAN;
  float label_smoothing = 0.f;

  // reduction: "none", "sum" or "mean"; label_smoothing in [0, 1].
  static SoftmaxCrossEntropyDescriptor make(const std::string& reduction, double label_smoothing, const char* op);
};

const char* reduction_name(MnnReduction r);

// What the forward hands to the gradient: softmax probabilities and the targets.
class SoftmaxCrossEntropyState : public State {
 public:
  Tensor probs;    // float32, the logits' shape
  Tensor labels;   // copies: int32 class indices (N[, H, W]) or float32 probabilities (logits' shape)
  Tensor weights;  // float32 (N,), or undefined
  bool index_labels = true;
  SoftmaxCrossEntropyDescriptor desc;
  DType logits_dtype = DType::float32;
  Shape loss_shape;  // (N,) or (N, H, W)
  const char* source_op() const override { return "softmax_cross_entropy_forward"; }
};

// loss = w_n * -sum_c target_c * log_softmax(logits)_c per position, then reduced:
// "none" -> float32 loss_shape, "sum" / "mean" -> float32 scalar (shape ()).
// labels: int32/int64 class indices (loss_shape) or float probabilities (logits' shape).
// weights: float32 (N,) or undefined.
std::pair<Tensor, std::shared_ptr<SoftmaxCrossEntropyState>> softmax_cross_entropy_forward(
    const Tensor& logits, const Tensor& labels, const Tensor& weights, const SoftmaxCrossEntropyDescriptor& desc);

// dlogits = scale * w_n * (p - target), with scale = dloss (per position for "none") and
// 1 / (N * H * W) for "mean"; dloss is a float scalar (shape ()) or, for "none", of loss_shape.
Tensor softmax_cross_entropy_backward(const std::shared_ptr<State>& state, const Tensor& dloss);

// ---- Generic loss (MPSCNNLossDescriptor). The math of each type is in python/metalnn/ops/loss.py.
const char* loss_type_name(uint32_t type);
// "mean_squared_error", ... (snake_case MPSCNNLossType names); fails naming `arg`.
MnnLossType parse_loss_type(const std::string& name, const char* op, const char* arg);
// "none", "sum", "mean" or "sum_by_non_zero_weights".
MnnReduction parse_reduction(const std::string& name, const char* op);
// True for the types with one loss per position over the c channels (softmax, cosine).
bool loss_per_position(uint32_t type);

struct LossDescriptor {
  MnnLossType type = MNN_LOSS_MEAN_SQUARED_ERROR;
  MnnReduction reduction = MNN_REDUCTION_MEAN;
  float weight = 1.f;           // scalar weight of every term (MPSCNNLossDescriptor.weight)
  float label_smoothing = 0.f;  // softmax / sigmoid cross-entropy only
  float delta = 1.f;            // Huber
  float epsilon = 1e-7f;        // log loss

  static LossDescriptor make(const std::string& type, const std::string& reduction, double weight,
                             double label_smoothing, double delta, double epsilon, const char* op);
};

// What loss_forward and yolo_loss_forward hand to loss_backward: the weighted gradient of
// every loss term with respect to the predictions (the forward computes it, as MPS does),
// and how the reduction scales it.
class LossState : public State {
 public:
  Tensor grad;           // float32, the predictions' shape
  Shape loss_shape;      // shape of the unreduced loss
  MnnReduction reduction = MNN_REDUCTION_MEAN;
  double divisor = 1.0;  // the reduction's divisor: 1 (sum, none), terms (mean), non-zero weights
  DType dtype = DType::float32;  // of the predictions and their gradient
  MnnLossParams params{};        // n, c, s and the type (per-position or per-element terms)
  const char* op = "loss_forward";
  const char* source_op() const override { return op; }
};

// loss = reduce(w * l(predictions, labels)) with l of desc.type (per element, or per position
// (N[, H, W]) for softmax cross-entropy / cosine distance). predictions: float32/float16
// (N, C, ...); labels: float of the predictions' shape, or int32/int64 class indices (N, ...)
// for the softmax / categorical cross-entropy; weights: float32 (N,) or the loss's shape.
// "none" -> float32 loss of the loss's shape, else a float32 scalar.
std::pair<Tensor, std::shared_ptr<LossState>> loss_forward(const Tensor& predictions, const Tensor& labels,
                                                           const Tensor& weights, const LossDescriptor& desc);

// d loss / d predictions = dloss * d(reduce)/d(term) * stored gradient; dloss is a float scalar
// (shape ()) or, for "none", of the loss's shape. Returned in the predictions' dtype.
Tensor loss_backward(const std::shared_ptr<State>& state, const Tensor& dloss);

// ---- YOLO detection loss (MPSCNNYOLOLossDescriptor).
struct YoloLossDescriptor {
  MnnYoloLossParams params{};  // everything but n and s
  MnnReduction reduction = MNN_REDUCTION_SUM;

  // anchors: (width, height) pairs in grid-cell units; terms: xy, wh, confidence, classes.
  static YoloLossDescriptor make(const std::vector<std::pair<double, double>>& anchors, int64_t classes,
                                 const MnnLossTerm (&terms)[4], const double (&scales)[5],
                                 double min_iou_for_object_presence, double max_iou_for_object_absence,
                                 bool rescore, const std::string& reduction, const char* op);
};
// A loss term for YoloLossDescriptor::make (checks the type's options).
MnnLossTerm make_loss_term(const std::string& type, double delta, double epsilon, double label_smoothing,
                           const char* op, const char* arg);

// predictions, labels: (N, anchors * (5 + classes), H, W); labels float. Loss per element for
// "none" (the predictions' shape), else a float32 scalar ("mean": / number of elements).
std::pair<Tensor, std::shared_ptr<LossState>> yolo_loss_forward(const Tensor& predictions, const Tensor& labels,
                                                                const YoloLossDescriptor& desc);

}  // namespace metalnn
