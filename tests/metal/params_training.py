"""ctypes mirrors of the training params structs (cpp/kernels/loss_params.h, optimizer_params.h),
and builders that fill them as the C++ ops layer does (cpp/metalnn/ops/{loss,optimizer}.cpp)."""

from __future__ import annotations

import ctypes
import math

F, U, I = ctypes.c_float, ctypes.c_uint32, ctypes.c_int32

REDUCTIONS = ("none", "sum", "mean")
REGULARIZATIONS = {"none": 0, "l1": 1, "l2": 2}


class SoftmaxCrossEntropyParams(ctypes.Structure):
    _fields_ = [("n", I), ("c", I), ("s", I), ("index_labels", U), ("has_weights", U), ("reduction", U),
                ("label_smoothing", F), ("scale", F), ("dloss_per_position", U)]


class OptimizerParams(ctypes.Structure):
    _fields_ = [("learning_rate", F), ("gradient_rescale", F), ("apply_gradient_clipping", U),
                ("gradient_clip_min", F), ("gradient_clip_max", F), ("regularization_type", U),
                ("regularization_scale", F), ("pad0", U)]


class SgdParams(ctypes.Structure):
    _fields_ = [("common", OptimizerParams), ("momentum", F), ("nesterov", U), ("has_momentum_buffer", U),
                ("pad0", U)]


class AdamParams(ctypes.Structure):
    _fields_ = [("common", OptimizerParams), ("beta1", F), ("beta2", F), ("one_minus_beta1", F),
                ("one_minus_beta2", F), ("epsilon", F), ("lr_t", F), ("amsgrad", U), ("pad0", U)]


class RmsPropParams(ctypes.Structure):
    _fields_ = [("common", OptimizerParams), ("decay", F), ("one_minus_decay", F), ("epsilon", F), ("pad0", U)]


def optimizer_common(learning_rate, weight_decay=0.0, gradient_rescale=1.0, gradient_clip=None,
                     regularization="l2") -> OptimizerParams:
    lo, hi = gradient_clip if gradient_clip is not None else (0.0, 0.0)
    # A zero scale skips the term (as the ops layer does), so 0 * inf never makes NaN.
    reg = REGULARIZATIONS[regularization] if weight_decay > 0 else 0
    return OptimizerParams(learning_rate, gradient_rescale, int(gradient_clip is not None), lo, hi, reg,
                           weight_decay, 0)


def sgd_params(has_momentum_buffer: bool, momentum=0.0, nesterov=False, learning_rate=0.01, **common) -> SgdParams:
    return SgdParams(optimizer_common(learning_rate, **common), momentum, int(nesterov), int(has_momentum_buffer), 0)


def adam_params(step: int, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, amsgrad=False,
                **common) -> AdamParams:
    # lr_t and the (1 - beta) factors in double, as the host does.
    lr_t = learning_rate * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    return AdamParams(optimizer_common(learning_rate, **common), beta1, beta2, 1.0 - beta1, 1.0 - beta2, epsilon,
                      lr_t, int(amsgrad), 0)


def rmsprop_params(learning_rate=1e-3, decay=0.9, epsilon=1e-8, **common) -> RmsPropParams:
    return RmsPropParams(optimizer_common(learning_rate, **common), decay, 1.0 - decay, epsilon, 0)
