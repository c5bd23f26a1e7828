"""Normalization over NCHW images, forward and gradient (MPSCNNBatchNormalization,
MPSCNNInstanceNormalization, group / layer normalization, MPSCNNCrossChannelNormalization).

``x`` is ``(N, C, H, W)``, ``(N, C, L)`` or ``(N, C)``, float32 or float16 (computed in
float32, statistics combined in double on the CPU); write ``S`` for the positions per
channel (``H*W``). ``gamma``, ``beta``, the statistics and the parameter gradients are
float32 ``(C,)`` whatever the image dtype. Every normalization here is

    xhat = (x - mean) / sqrt(var + epsilon),   y = gamma[c] * xhat + beta[c]

with mean and the biased variance taken over:

* batch norm:     per channel, over (N, S)
* group norm:     per sample and group of C / groups consecutive channels, over (C / groups, S)
* instance norm:  per sample and channel, over S (group norm with groups = C)
* layer norm:     per sample, over (C, S) (group norm with groups = 1). The affine is per
  channel (``gamma``/``beta`` of shape ``(C,)``, as ``GroupNorm(1, C)``), not elementwise:
  one set of kernels then serves all three and the parameters do not depend on H, W.

Gradients (M elements per statistic, sums over the statistic's elements)::

    dbeta[c] = sum_{n,s} dy,   dgamma[c] = sum_{n,s} dy * xhat
    dx = (1 / sigma) * (g - mean(g) - xhat * mean(g * xhat)),   g = gamma[c] * dy

(for batch norm with frozen statistics, ``training=False``: ``dx = gamma[c] * dy / sigma``).
"""

from __future__ import annotations

import numbers

from .. import _core
from ._util import ArrayLike


def _int(value, name: str, op: str) -> int:
    """An int argument (numpy ints too); bools and floats raise TypeError naming ``op``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"[{op}] {name} must be an int, got {value!r}")
    return int(value)

#: The state batch_norm_forward returns (mean, variance, inv_std, training, epsilon).
BatchNormState = _core.ops.BatchNormState
#: The state group/instance/layer_norm_forward return (mean and inv_std per (N, groups)).
GroupNormState = _core.ops.GroupNormState


def batch_norm_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    running_mean: ArrayLike | None = None,
    running_var: ArrayLike | None = None,
    training: bool = True,
    momentum: float = 0.1,
    epsilon: float = 1e-5,
) -> tuple[ArrayLike, BatchNormState]:
    """Batch normalization; returns ``(y, state)``.

    ``training=True``: mean / var are this batch's, per channel over (N, S) (M = N*S > 1);
    when ``running_mean`` / ``running_var`` are given (both, writable float32 (C,)) they are
    updated in place::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    ``training=False``: normalises with ``running_mean`` / ``running_var`` (required). The
    state then refers to those arrays (its gradient treats them as constants).
    ``epsilon > 0``; ``0 <= momentum <= 1``.
    """
    return _core.ops.batch_norm_forward(x, gamma, beta, running_mean, running_var, bool(training),
                                        float(momentum), float(epsilon))


def batch_norm_backward(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, state: BatchNormState
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """``(dx, dgamma, dbeta)`` of batch norm; ``x``, ``gamma`` and ``state`` are the forward's.

    With batch statistics, ``dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat))``
    (means over (N, S) per channel); with running ones ``dx = gamma / sigma * dy``.
    """
    return _core.ops.batch_norm_backward(dy, x, gamma, state)


def group_norm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, groups: int, epsilon: float = 1e-5
) -> tuple[ArrayLike, GroupNormState]:
    """Group normalization (``groups`` divides C); returns ``(y, state)``.

    Statistics per sample n and group k over channels ``[k*C/groups, (k+1)*C/groups)`` and all
    positions; ``y = gamma[c] * xhat + beta[c]``.
    """
    return _core.ops.group_norm_forward(x, gamma, beta, _int(groups, "groups", "group_norm_forward"), float(epsilon))


def group_norm_backward(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, state: GroupNormState
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """``(dx, dgamma, dbeta)``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma`` per
    (sample, group) with ``g = gamma[c] * dy``; dgamma / dbeta summed over samples and positions."""
    return _core.ops.group_norm_backward(dy, x, gamma, state)


def instance_norm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, epsilon: float = 1e-5
) -> tuple[ArrayLike, GroupNormState]:
    """Instance normalization: statistics per (n, c) over the positions (group norm with
    groups = C); returns ``(y, state)``."""
    return _core.ops.instance_norm_forward(x, gamma, beta, epsilon=float(epsilon))


def instance_norm_backward(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, state: GroupNormState
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """``(dx, dgamma, dbeta)`` of instance normalization (see :func:`group_norm_backward`)."""
    return _core.ops.instance_norm_backward(dy, x, gamma, state)


def layer_norm_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, epsilon: float = 1e-5
) -> tuple[ArrayLike, GroupNormState]:
    """Layer normalization: statistics per sample over (C, S) (group norm with groups = 1),
    per-channel affine ``gamma[c]``, ``beta[c]``; returns ``(y, state)``."""
    return _core.ops.layer_norm_forward(x, gamma, beta, epsilon=float(epsilon))


def layer_norm_backward(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, state: GroupNormState
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """``(dx, dgamma, dbeta)`` of layer normalization (see :func:`group_norm_backward`)."""
    return _core.ops.layer_norm_backward(dy, x, gamma, state)


def cross_channel_norm_forward(
    x: ArrayLike, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, delta: float = 1.0
) -> ArrayLike:
    """Local response normalization across channels (MPSCNNCrossChannelNormalization)::

        q[n, c, s] = delta + alpha / size * sum_{j in W(c)} x[n, j, s]^2
        y[n, c, s] = x[n, c, s] * q[n, c, s]^(-beta)

    with the window ``W(c) = [c - size//2, c + (size-1)//2]`` clipped to the channels (as
    PyTorch's LocalResponseNorm; centred for odd sizes). ``size >= 1``, ``alpha >= 0``,
    ``delta > 0`` (so q > 0), ``beta`` finite. MPS's defaults: 5, 1e-4, 0.75, 1.
    """
    size = _int(size, "size", "cross_channel_norm_forward")
    return _core.ops.cross_channel_norm_forward(x, size, float(alpha), float(beta), float(delta))


def cross_channel_norm_backward(
    dy: ArrayLike, x: ArrayLike, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, delta: float = 1.0
) -> ArrayLike:
    """dx of :func:`cross_channel_norm_forward` from its input ``x``::

        dx[j] = dy[j] q[j]^(-beta) - 2 alpha beta / size * x[j] * sum_{c : j in W(c)} dy[c] x[c] q[c]^(-beta-1)
    """
    size = _int(size, "size", "cross_channel_norm_backward")
    return _core.ops.cross_channel_norm_backward(dy, x, size, float(alpha), float(beta), float(delta))
