"""ctypes mirrors of the generic and YOLO loss params (cpp/kernels/loss_params.h), filled as the
C++ ops layer fills them (cpp/metalnn/ops/loss.cpp)."""

from __future__ import annotations

import ctypes

F, U, I = ctypes.c_float, ctypes.c_uint32, ctypes.c_int32

LOSS_TYPES = ("mean_absolute_error", "mean_squared_error", "softmax_cross_entropy", "sigmoid_cross_entropy",
              "categorical_cross_entropy", "hinge", "huber", "cosine_distance", "log",
              "kullback_leibler_divergence")
GROUPED = ("softmax_cross_entropy", "cosine_distance")
WEIGHTS = {None: 0, "sample": 1, "term": 2}
MAX_ANCHORS = 16


class LossParams(ctypes.Structure):
    _fields_ = [("n", I), ("c", I), ("s", I), ("type", U), ("weights_mode", U), ("weight", F),
                ("label_smoothing", F), ("delta", F), ("epsilon", F), ("scale", F), ("dloss_per_term", U),
                ("count", U)]


class LossTerm(ctypes.Structure):
    _fields_ = [("type", U), ("delta", F), ("epsilon", F), ("label_smoothing", F)]


class YoloLossParams(ctypes.Structure):
    _fields_ = [("n", I), ("anchors", I), ("classes", I), ("s", I), ("xy", LossTerm), ("wh", LossTerm),
                ("confidence", LossTerm), ("class_term", LossTerm), ("scale_xy", F), ("scale_wh", F),
                ("scale_no_object", F), ("scale_object", F), ("scale_class", F),
                ("min_iou_for_object_presence", F), ("max_iou_for_object_absence", F), ("rescore", U),
                ("anchor_w", F * MAX_ANCHORS), ("anchor_h", F * MAX_ANCHORS)]


def loss_params(shape, kind, weights=None, weight=1.0, smoothing=0.0, delta=1.0, epsilon=1e-7, scale=1.0,
                per_term=False) -> LossParams:
    n, c = shape[0], shape[1]
    s = 1
    for v in shape[2:]:
        s *= v
    count = n * s if kind in GROUPED else n * c * s
    return LossParams(n, c, s, LOSS_TYPES.index(kind), WEIGHTS[weights], weight, smoothing, delta, epsilon, scale,
                      int(per_term), count)


def term(kind, delta=1.0, epsilon=1e-7, smoothing=0.0) -> LossTerm:
    return LossTerm(LOSS_TYPES.index(kind), delta, epsilon, smoothing)


def yolo_params(n, s, anchors, classes, xy="mean_squared_error", wh="huber", confidence="sigmoid_cross_entropy",
                classes_loss="softmax_cross_entropy", scales=(10.0, 10.0, 5.0, 100.0, 2.0), min_iou=0.7,
                max_iou=0.3, rescore=True) -> YoloLossParams:
    aw = (F * MAX_ANCHORS)(*[a[0] for a in anchors])
    ah = (F * MAX_ANCHORS)(*[a[1] for a in anchors])
    return YoloLossParams(n, len(anchors), classes, s, term(xy), term(wh), term(confidence), term(classes_loss),
                          *scales, min_iou, max_iou, int(rescore), aw, ah)
