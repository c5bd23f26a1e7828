// Loss parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Softmax cross-entropy views logits as (n, c, s): one distribution over c at each of
// the n * s positions (s = H * W for images, 1 for (N, C) matrices). The generic loss
// (MPSCNNLoss) uses the same (n, c, s) view of its predictions.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnReduction {
  MNN_REDUCTION_NONE = 0,  // one loss per position (per loss term for the generic loss)
  MNN_REDUCTION_SUM = 1,   // sum over positions
  MNN_REDUCTION_MEAN = 2,  // sum / (n * s), whatever the weights
  MNN_REDUCTION_SUM_BY_NON_ZERO_WEIGHTS = 3,  // generic loss only: sum / number of non-zero weights
};

struct MnnSoftmaxCrossEntropyParams {
  int32_t n, c, s;
  uint32_t index_labels;  // 1: labels are class indices (n, s); 0: probabilities (n, c, s)
  uint32_t has_weights;   // 1: per-sample weights (n)
  uint32_t reduction;     // MnnReduction
  float label_smoothing;  // target = (1 - ls) * label + ls / c
  float scale;            // gradient: scale of (p - target) (reduction and a scalar dloss)
  uint32_t dloss_per_position;  // gradient: 1 when dloss holds one value per position
};

// MPSCNNLossType, same order and values.
enum MnnLossType {
  MNN_LOSS_MEAN_ABSOLUTE_ERROR = 0,
  MNN_LOSS_MEAN_SQUARED_ERROR = 1,
  MNN_LOSS_SOFTMAX_CROSS_ENTROPY = 2,  // per position: over the c channels
  MNN_LOSS_SIGMOID_CROSS_ENTROPY = 3,
  MNN_LOSS_CATEGORICAL_CROSS_ENTROPY = 4,
  MNN_LOSS_HINGE = 5,
  MNN_LOSS_HUBER = 6,
  MNN_LOSS_COSINE_DISTANCE = 7,  // per position: over the c channels
  MNN_LOSS_LOG = 8,
  MNN_LOSS_KULLBACK_LEIBLER_DIVERGENCE = 9,
  MNN_LOSS_TYPE_COUNT = 10,
};

enum MnnLossWeights {
  MNN_LOSS_WEIGHTS_NONE = 0,
  MNN_LOSS_WEIGHTS_PER_SAMPLE = 1,  // weights (n): one per sample
  MNN_LOSS_WEIGHTS_PER_TERM = 2,    // weights of the loss's shape: one per loss term
};

// Generic loss (loss_forward / loss_backward). The forward writes one loss per term (per
// element, or per position for the softmax cross-entropy and cosine distance) and the
// weighted gradient of each term with respect to the predictions; the reduction and the
// incoming gradient scale them afterwards.
struct MnnLossParams {
  int32_t n, c, s;
  uint32_t type;          // MnnLossType
  uint32_t weights_mode;  // MnnLossWeights
  float weight;           // the descriptor's scalar weight, times every term
  float label_smoothing;  // softmax: (1 - ls) * t + ls / c; sigmoid: (1 - ls) * t + ls / 2
  float delta;            // Huber
  float epsilon;          // log loss
  float scale;            // reduce: 1 / divisor (sum: 1); backward: reduction scale times a scalar dloss
  uint32_t dloss_per_term;  // backward: dloss holds one value per loss term
  uint32_t count;           // number of loss terms (reduce); number of elements (backward)
};

// One component of the YOLO loss: an elementwise loss type and its options.
struct MnnLossTerm {
  uint32_t type;  // MnnLossType (softmax cross-entropy / cosine distance: classes only)
  float delta, epsilon, label_smoothing;
};

#define MNN_YOLO_MAX_ANCHORS 16

// YOLO detection loss (MPSCNNYOLOLoss): predictions and labels (n, anchors * (5 + classes), s),
// channels per anchor X Y W H C F... (s = H * W grid cells).
struct MnnYoloLossParams {
  int32_t n, anchors, classes, s;
  MnnLossTerm xy, wh, confidence, class_term;
  float scale_xy, scale_wh, scale_no_object, scale_object, scale_class;
  float min_iou_for_object_presence, max_iou_for_object_absence;
  uint32_t rescore;
  float anchor_w[MNN_YOLO_MAX_ANCHORS];
  float anchor_h[MNN_YOLO_MAX_ANCHORS];
};
