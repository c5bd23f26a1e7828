"""Losses, as MPSCNNLoss: softmax cross-entropy (its own API, below), the generic
:func:`loss_forward` / :func:`loss_backward` for every MPSCNNLossType, and the YOLO
detection loss :func:`yolo_loss_forward` (MPSCNNYOLOLoss).

Softmax cross-entropy (``softmax_cross_entropy_forward``)
---------------------------------------------------------

Logits are ``(N, C)`` or ``(N, C, H, W)``; the C channels (axis 1) at each position are
one distribution. Labels are either class indices (int32/int64, shape ``(N,)`` or
``(N, H, W)``) or probabilities with the logits' shape (float32/float16). With label
smoothing ``s`` the target is

    target_c = (1 - s) * label_c + s / C      (label_c one-hot for class indices)

and the loss of position ``(n, h, w)``, with optional per-sample weights ``w_n``, is

    loss = w_n * -sum_c target_c * log_softmax(logits)_c

computed from log-softmax, so it stays finite for large logits. Reductions: ``"none"``
(loss per position, float32 of shape (N,) or (N, H, W)), ``"sum"``, and ``"mean"`` =
sum / (N*H*W) -- divided by the number of positions, not by the sum of the weights, as
MPS does. ``"sum"`` and ``"mean"`` return a float32 scalar array (shape ``()``).

The gradient is ``dlogits = scale * w_n * (softmax(logits) - target)``, with scale = dloss
(per position for ``"none"``) times 1/(N*H*W) for ``"mean"``; it assumes each target sums to
1 over C. It is returned in the logits' dtype. float16 logits are computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import _core
from ._util import ArrayLike

#: The state softmax_cross_entropy_forward returns (a subclass of :class:`metalnn.State`).
SoftmaxCrossEntropyState = _core.ops.SoftmaxCrossEntropyState

REDUCTIONS = ("none", "sum", "mean")


def softmax_cross_entropy_forward(
    logits: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[ArrayLike, SoftmaxCrossEntropyState]:
    """Returns ``(loss, state)``; see the module docstring for the math.

    Every label index must lie in [0, C) (checked before anything is computed).
    ``weights`` are float32 of shape (N,), one per sample.
    """
    return _core.ops.softmax_cross_entropy_forward(
        logits, labels, weights, reduction, label_smoothing
    )


def softmax_cross_entropy_backward(
    state: SoftmaxCrossEntropyState, dloss: float | ArrayLike = 1.0
) -> ArrayLike:
    """dlogits = scale * w_n * (p - target).

    ``dloss`` is the gradient of the loss: a number (or a shape () array), or for
    reduction ``"none"`` also an array of the loss's shape.
    """
    return _core.ops.softmax_cross_entropy_backward(state, dloss)


# ----------------------------------------------------------------------------- generic loss

#: The state loss_forward and yolo_loss_forward return (a subclass of :class:`metalnn.State`).
LossState = _core.ops.LossState

#: MPSCNNLossType names, in MPS's order.
LOSS_TYPES = (
    "mean_absolute_error", "mean_squared_error", "softmax_cross_entropy", "sigmoid_cross_entropy",
    "categorical_cross_entropy", "hinge", "huber", "cosine_distance", "log", "kullback_leibler_divergence",
)
#: MPSCNNReductionType names.
LOSS_REDUCTIONS = ("none", "sum", "mean", "sum_by_non_zero_weights")


def loss_forward(
    predictions: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    loss_type: str,
    reduction: str = "mean",
    weight: float = 1.0,
    label_smoothing: float = 0.0,
    delta: float = 1.0,
    epsilon: float = 1e-7,
) -> tuple[ArrayLike, LossState]:
    r"""Loss of ``predictions`` against ``labels`` (MPSCNNLoss); returns ``(loss, state)``.

    Predictions are float32/float16 ``(N, C)`` or ``(N, C, ...)`` (e.g. NCHW images);
    labels (targets) ``t`` are float32/float16 of the same shape, or for
    ``softmax_cross_entropy`` / ``categorical_cross_entropy`` also int32/int64 class indices
    ``(N, ...)`` (one-hot targets). With ``y`` a prediction, the loss terms are (MPS's
    definitions, with the exact gradient ``g = d term / d y``):

    =============================  ==========================================  ===========================
    type                           term                                        gradient g
    =============================  ==========================================  ===========================
    mean_absolute_error            ``|y - t|``                                 ``sign(y - t)`` (0 at y = t)
    mean_squared_error             ``(y - t)^2``                               ``2 (y - t)``
    softmax_cross_entropy          ``-sum_c t_c log_softmax(y)_c`` (per pos.)  ``softmax(y)_c sum(t) - t_c``
    sigmoid_cross_entropy          ``max(y, 0) - y t + log(1 + exp(-|y|))``    ``sigmoid(y) - t``
    categorical_cross_entropy      ``-t log(y)`` (0 where t = 0)               ``-t / y``
    hinge                          ``max(1 - (2t - 1) y, 0)`` (t in {0, 1})    ``-(2t - 1)`` where positive
    huber                          ``d^2 / 2`` if ``|d| <= delta``, else       ``clamp(d, -delta, delta)``
                                   ``delta (|d| - delta / 2)``; ``d = y - t``
    cosine_distance                ``1 - sum_c y_c t_c`` (per position)        ``-t_c``
    log                            ``-t log(y + eps) - (1 - t) log(1 - y + eps)``  ``-t/(y+eps) + (1-t)/(1-y+eps)``
    kullback_leibler_divergence    ``t (log t - y)`` (y: log-probabilities)    ``-t``
    =============================  ==========================================  ===========================

    ``softmax_cross_entropy`` and ``cosine_distance`` give one term per position (over the C
    channels: loss shape ``(N, ...)`` without C); every other type one term per element (the
    predictions' shape). Where MPS's header prints formulas that disagree with their own
    gradients we follow the consistent pair: Huber's quadratic branch is ``d^2 / 2`` (the header
    prints ``y^2``) with the signed gradient; hinge maps 0/1 labels to -1/+1 as MPS's gradient
    does; the KL gradient of ``t (log t - y)`` is ``-t`` (the header prints ``-t / y``); the
    softmax gradient keeps ``sum(t)`` so it is exact for targets that do not sum to 1.

    Label smoothing (``softmax_cross_entropy``: ``t <- t (1 - s) + s / C``;
    ``sigmoid_cross_entropy``: ``t <- t (1 - s) + s / 2``; other types reject it).
    Weights: each term is multiplied by ``weight`` (the descriptor's scalar) and by
    ``weights`` -- float32 ``(N,)`` per sample, or the loss's shape (one per term).
    Reductions over every term (across the batch): ``"none"`` (float32 array of the loss's
    shape), ``"sum"``, ``"mean"`` = sum / number of terms, ``"sum_by_non_zero_weights"`` =
    sum / number of terms whose weight is non-zero (0 when there is none); the reduced loss is
    a float32 scalar array. float16 predictions are computed in float32.
    """
    return _core.ops.loss_forward(
        predictions, labels, weights, loss_type=loss_type, reduction=reduction, weight=weight,
        label_smoothing=label_smoothing, delta=delta, epsilon=epsilon,
    )


def loss_backward(state: LossState, dloss: float | ArrayLike = 1.0) -> ArrayLike:
    """Gradient of the loss with respect to the predictions, in their dtype:

        dpredictions = dloss * w * g / divisor

    with ``g`` the type's gradient above, ``w`` the term's weight, ``divisor`` the reduction's
    (1 for none / sum). ``dloss`` is a number (or shape () array), or for ``"none"`` an array of
    the loss's shape (one per term; per position for the softmax / cosine types). Also takes
    the state of :func:`yolo_loss_forward`.
    """
    return _core.ops.loss_backward(state, dloss)


@dataclass(frozen=True)
class LossDescriptor:
    """One loss's options (MPSCNNLossDescriptor); used by :class:`metalnn.graph.LossNode` and
    as a YOLO component. ``reduction`` is ignored inside a YOLO loss."""

    loss_type: str
    reduction: str = "mean"
    weight: float = 1.0
    label_smoothing: float = 0.0
    delta: float = 1.0
    epsilon: float = 1e-7

    def term(self) -> tuple[str, float, float, float]:
        return (self.loss_type, float(self.delta), float(self.epsilon), float(self.label_smoothing))


def _term(spec: str | LossDescriptor, name: str) -> tuple[str, float, float, float]:
    if isinstance(spec, str):
        return LossDescriptor(spec).term()
    if isinstance(spec, LossDescriptor):
        return spec.term()
    raise TypeError(f"[yolo_loss_forward] {name} must be a loss type name or a LossDescriptor, "
                    f"got {type(spec).__name__}")


@dataclass(frozen=True)
class YOLOLossDescriptor:
    """MPSCNNYOLOLossDescriptor: anchor boxes ``(width, height)`` in grid-cell units, the
    number of classes, one loss per component and its scale, IoU thresholds, rescore."""

    anchor_boxes: Sequence[tuple[float, float]]
    num_classes: int
    xy_loss: str | LossDescriptor = "mean_squared_error"
    wh_loss: str | LossDescriptor = "huber"
    confidence_loss: str | LossDescriptor = "sigmoid_cross_entropy"
    classes_loss: str | LossDescriptor = "softmax_cross_entropy"
    scale_xy: float = 10.0
    scale_wh: float = 10.0
    scale_no_object: float = 5.0
    scale_object: float = 100.0
    scale_class: float = 2.0
    min_iou_for_object_presence: float = 0.7
    max_iou_for_object_absence: float = 0.3
    rescore: bool = True
    reduction: str = "sum"

    def arguments(self) -> tuple:
        """The positional arguments of ``_core.ops.yolo_loss_forward`` after predictions, labels."""
        anchors = [tuple(float(v) for v in a) for a in self.anchor_boxes]
        return (anchors, int(self.num_classes), _term(self.xy_loss, "xy_loss"), _term(self.wh_loss, "wh_loss"),
                _term(self.confidence_loss, "confidence_loss"), _term(self.classes_loss, "classes_loss"),
                [float(self.scale_xy), float(self.scale_wh), float(self.scale_no_object),
                 float(self.scale_object), float(self.scale_class)],
                float(self.min_iou_for_object_presence), float(self.max_iou_for_object_absence),
                bool(self.rescore), self.reduction)


def yolo_loss_forward(
    predictions: ArrayLike, labels: ArrayLike, descriptor: YOLOLossDescriptor | None = None, **options
) -> tuple[ArrayLike, LossState]:
    r"""YOLO detection loss (MPSCNNYOLOLoss); returns ``(loss, state)``, gradient by
    :func:`loss_backward`. Pass a :class:`YOLOLossDescriptor` or its fields as keywords.

    Predictions and labels are ``(N, A * (5 + K), H, W)`` for A anchor boxes and K classes;
    the ``5 + K`` channels of anchor ``a`` at grid cell ``(h, w)`` are ``X Y W H C F_1..F_K``.
    Predictions are raw network outputs; labels hold, for the anchor responsible for an
    object, ``C = 1``, the box centre ``X, Y`` in [0, 1] within the cell, its size ``W, H``
    in grid cells (> 0) and the class targets ``F`` (one-hot); ``C = 0`` elsewhere.
    With ``px = sigmoid(X)``, ``pw = anchor_w exp(W)`` (likewise y, h), for each anchor:

    * object (label C > 0):
      ``scale_xy (L_xy(px, tx) + L_xy(py, ty))``
      ``+ scale_wh (L_wh(W, log(tw / anchor_w)) + L_wh(H, log(th / anchor_h)))``
      ``+ scale_object L_conf(C, target)`` with ``target = C``, or with ``rescore``
      ``C * IoU(predicted box, true box)`` (``C`` when the IoU >= min_iou_for_object_presence;
      the IoU is a constant for the gradient)
      ``+ scale_class L_classes(F, t_F)`` (softmax cross-entropy over the K channels, or an
      elementwise loss);
    * no object: ``scale_no_object L_conf(C, 0)`` when the predicted box's IoU with every true
      box of its cell is below ``max_iou_for_object_absence``, else nothing.

    ``L_*`` are :func:`loss_forward`'s terms (the components' types and options). Each
    channel holds its own term: ``"none"`` returns them (the predictions' shape), ``"sum"``
    their sum, ``"mean"`` the sum / number of elements.
    """
    d = descriptor if descriptor is not None else YOLOLossDescriptor(**options)
    if descriptor is not None and options:
        raise TypeError("[yolo_loss_forward] pass a descriptor or keyword options, not both")
    return _core.ops.yolo_loss_forward(predictions, labels, *d.arguments())
