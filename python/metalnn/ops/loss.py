"""Softmax cross-entropy loss, as MPSCNNLoss with ``softMaxCrossEntropy``.

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
