#include "metalnn/backend/metal/loss.h"

#include <algorithm>

#include "metalnn/backend/metal/extents.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

namespace {
// Up to this many classes one simd-group per position does the work: a whole threadgroup
// per position would leave most of its threads idle (e.g. 10 digit classes).
constexpr int32_t kSimdClasses = 64;
}  // namespace

// Buffers: logits 0, labels 1, weights 2 (without weights: bind logits), probs 3, loss 4, params 5.
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                                   const Tensor& probs, const Tensor& loss, const MnnSoftmaxCrossEntropyParams& p) {
  const char* op = "softmax_cross_entropy_forward";
  const int64_t positions = (int64_t)p.n * p.s;
  checked_u32(op, "n * c * s", positions * p.c);
  const bool simd = p.c <= kSimdClasses;
  KernelCall k(op, simd ? kernel_name("softmax_cross_entropy_forward_simd", logits.dtype())
                        : kernel_name("softmax_cross_entropy_forward", logits.dtype()));
  k.buffer(0, logits, Access::read).buffer(1, labels, Access::read);
  k.buffer(2, p.has_weights && weights.defined() ? weights : logits, Access::read);
  k.buffer(3, probs, Access::write).buffer(4, loss, Access::write).bytes(5, p);
  if (positions == 0) return;
  if (simd) {
    // Position = threadgroup * simd-groups per threadgroup + simd-group; whole simd-groups only.
    const size_t sw = std::max<size_t>(k.pipeline().simd_width, 1);
    const size_t width = threadgroup_width(k.pipeline(), (size_t)positions * sw, 256);
    const size_t per_group = std::max<size_t>(width / sw, 1);
    k.groups(((size_t)positions + per_group - 1) / per_group, 1, 1, width);
  } else {
    // One threadgroup per position striding over c; at most 32 simd-group partials, so <= 1024.
    k.groups((size_t)positions, 1, 1, threadgroup_width(k.pipeline(), (size_t)p.c, 1024));
  }
}

// Buffers: loss 0, out 1, params 2; a single threadgroup folds every position.
void reduce_loss(const Tensor& loss, const Tensor& out, const MnnSoftmaxCrossEntropyParams& p) {
  const char* op = "softmax_cross_entropy_reduce";
  const uint32_t count = checked_u32(op, "n * s", (int64_t)p.n * p.s);
  KernelCall k(op, "softmax_cross_entropy_reduce");  // float32 only: the losses are float32
  k.buffer(0, loss, Access::read).buffer(1, out, Access::write).bytes(2, p);
  k.groups(1, 1, 1, threadgroup_width(k.pipeline(), count, 1024));
}

// Buffers: probs 0, labels 1, weights 2, dloss 3, dlogits 4, params 5; unused weights / dloss
// bind probs. One thread per logit.
void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& weights,
                                    const Tensor& dloss, const Tensor& dlogits,
                                    const MnnSoftmaxCrossEntropyParams& p) {
  const char* op = "softmax_cross_entropy_backward";
  const uint32_t count = checked_u32(op, "n * c * s", (int64_t)p.n * p.c * p.s);
  KernelCall k(op, kernel_name("softmax_cross_entropy_backward", dlogits.dtype()));
  k.buffer(0, probs, Access::read).buffer(1, labels, Access::read);
  k.buffer(2, p.has_weights && weights.defined() ? weights : probs, Access::read);
  k.buffer(3, p.dloss_per_position && dloss.defined() ? dloss : probs, Access::read);
  k.buffer(4, dlogits, Access::write).bytes(5, p).threads(count);
}

}  // namespace metalnn::metal

// ------------------------------------------------------------------ generic loss and YOLO loss

namespace metalnn::metal {

// Buffers: predictions 0, labels 1, weights 2 (without weights: bind labels), loss 3, grad 4, params 5.
void loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& weights, const Tensor& loss,
                  const Tensor& grad, const MnnLossParams& p) {
  const char* op = "loss_forward";
  const uint32_t count = checked_u32(op, "n * c * s", (int64_t)p.n * p.c * p.s);
  const bool grouped = p.type == MNN_LOSS_SOFTMAX_CROSS_ENTROPY || p.type == MNN_LOSS_COSINE_DISTANCE;
  KernelCall k(op, kernel_name(grouped ? "loss_forward_grouped" : "loss_forward", predictions.dtype()));
  k.buffer(0, predictions, Access::read).buffer(1, labels, Access::read);
  k.buffer(2, p.weights_mode != MNN_LOSS_WEIGHTS_NONE && weights.defined() ? weights : labels, Access::read);
  k.buffer(3, loss, Access::write).buffer(4, grad, Access::write).bytes(5, p);
  if (!grouped) {
    k.threads(count);
    return;
  }
  // Position = threadgroup * simd-groups per threadgroup + simd-group; whole simd-groups only.
  const size_t positions = (size_t)p.n * p.s;
  const size_t sw = std::max<size_t>(k.pipeline().simd_width, 1);
  const size_t width = threadgroup_width(k.pipeline(), positions * sw, 256);
  const size_t per_group = std::max<size_t>(width / sw, 1);
  k.groups((positions + per_group - 1) / per_group, 1, 1, width);
}

// Buffers: loss 0, out 1, params 2; a single threadgroup folds every term.
void reduce_loss_terms(const Tensor& loss, const Tensor& out, const MnnLossParams& p) {
  const char* op = "loss_reduce";
  const uint32_t count = checked_u32(op, "terms", loss.numel());
  MnnLossParams q = p;
  q.count = count;
  KernelCall k(op, "loss_reduce");  // float32 only: the losses are float32
  k.buffer(0, loss, Access::read).buffer(1, out, Access::write).bytes(2, q);
  k.groups(1, 1, 1, threadgroup_width(k.pipeline(), count, 1024));
}

// Buffers: grad 0, dloss 1 (unused: bind grad), dpred 2, params 3; one thread per element.
void loss_backward(const Tensor& grad, const Tensor& dloss, const Tensor& dpred, const MnnLossParams& p) {
  const char* op = "loss_backward";
  const uint32_t count = checked_u32(op, "n * c * s", grad.numel());
  KernelCall k(op, kernel_name("loss_backward", dpred.dtype()));
  k.buffer(0, grad, Access::read);
  k.buffer(1, p.dloss_per_term && dloss.defined() ? dloss : grad, Access::read);
  k.buffer(2, dpred, Access::write).bytes(3, p).threads(count);
}

// Buffers: predictions 0, labels 1, loss 2, grad 3, params 4; one thread per anchor box of a cell.
void yolo_loss_forward(const Tensor& predictions, const Tensor& labels, const Tensor& loss, const Tensor& grad,
                       const MnnYoloLossParams& p) {
  const char* op = "yolo_loss_forward";
  checked_u32(op, "predictions", predictions.numel());
  const uint32_t count = checked_u32(op, "n * anchors * s", (int64_t)p.n * p.anchors * p.s);
  KernelCall k(op, kernel_name("yolo_loss_forward", predictions.dtype()));
  k.buffer(0, predictions, Access::read).buffer(1, labels, Access::read);
  k.buffer(2, loss, Access::write).buffer(3, grad, Access::write).bytes(4, p).threads(count);
}

}  // namespace metalnn::metal
