"""Softmax and log-softmax over the feature channels, as MPSCNNSoftMax / MPSCNNLogSoftMax.

Input is ``(N, C)`` or ``(N, C, H, W)``; each position ``(n, :, h, w)`` is normalised
over the C channels (axis 1). Numerically stable: with ``m = max_c x``,

    softmax(x)_c     = exp(x_c - m) / sum_k exp(x_k - m)
    log_softmax(x)_c = (x_c - m) - log(sum_k exp(x_k - m))

A NaN (or +inf) anywhere in a position makes that whole position NaN. float32 or
float16 storage, computed in float32 and rounded once.
"""

from __future__ import annotations

from .. import _core
from ._util import ArrayLike


def softmax_forward(x: ArrayLike) -> ArrayLike:
    """y = softmax(x) over axis 1 of (N, C) or (N, C, H, W) input."""
    return _core.ops.softmax_forward(x)


def log_softmax_forward(x: ArrayLike) -> ArrayLike:
    """y = log_softmax(x) over axis 1 of (N, C) or (N, C, H, W) input."""
    return _core.ops.log_softmax_forward(x)


def softmax_backward(dy: ArrayLike, y: ArrayLike) -> ArrayLike:
    """dx_c = y_c * (dy_c - sum_k dy_k * y_k), where ``y`` is the softmax output."""
    return _core.ops.softmax_backward(dy, y)


def log_softmax_backward(dy: ArrayLike, y: ArrayLike) -> ArrayLike:
    """dx_c = dy_c - exp(y_c) * sum_k dy_k, where ``y`` is the log-softmax output."""
    return _core.ops.log_softmax_backward(dy, y)
