"""Optimizer steps, as MPSNNOptimizerStochasticGradientDescent / Adam / RMSProp.

Every step updates ``weights`` and the optimizer state arrays **in place** and returns
None. Weights and gradients are float32 or float16 of one dtype (float16 weights are read,
updated in float32 and rounded once); state arrays (``momentum_buffer``, ``m``, ``v``,
``v_max``, ``s``) are always float32 of the weights' shape. numpy arrays must be
C-contiguous and writeable. Every argument is checked before anything is written, so bad
input (ValueError / TypeError naming the argument) leaves weights and state byte-identical.

Gradient preprocessing, common to all optimizers, in MPS order::

    g = gradient_rescale * gradients
    g = clamp(g, lo, hi)            if gradient_clip = (lo, hi)
    g = g + weight_decay * w        regularization="l2" (default)
    g = g + weight_decay * sign(w)  regularization="l1"   (sign(0) = 0)
    g unchanged                     regularization="none" (or weight_decay=0)

as MPSNNRegularizationType none / L1 / L2 with ``weight_decay`` the regularization scale; the
term is applied to the gradient before the update rule, so it passes through momentum and
the Adam / RMSProp moments like the gradient itself.

The ``*_many`` forms take lists (one entry per parameter tensor) and update a whole
network in one call and one parallel region. Their ``learning_rate_scales`` (None, or one
finite value >= 0 per tensor) updates tensor i with ``learning_rate * learning_rate_scales[i]``
(a data source's per-layer learning-rate scale); tensors that share a scale share one kernel
call.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _core
from ._util import ArrayLike


def sgd_step(
    weights: ArrayLike,
    gradients: ArrayLike,
    momentum_buffer: ArrayLike | None = None,
    learning_rate: float = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
) -> None:
    """Stochastic gradient descent with momentum (MPS rule), after the preprocessing above::

        v = momentum * v - learning_rate * g
        w = w + v                                   (nesterov=False)
        w = w + momentum * v - learning_rate * g    (nesterov=True, v the new value)

    ``momentum_buffer`` (v, float32) is required when momentum > 0; with momentum == 0 it
    may be omitted (then w -= learning_rate * g). Ranges: learning_rate >= 0,
    0 <= momentum < 1, weight_decay >= 0, clip lo <= hi.
    """
    _core.ops.sgd_step(
        weights,
        gradients,
        momentum_buffer,
        learning_rate,
        momentum,
        nesterov,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
    )


def adam_step(
    weights: ArrayLike,
    gradients: ArrayLike,
    m: ArrayLike,
    v: ArrayLike,
    step: int,
    learning_rate: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    amsgrad: bool = False,
    v_max: ArrayLike | None = None,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
) -> None:
    """Adam / AMSGrad (MPS form), after the preprocessing above; ``step`` t is 1-based and the
    caller increments it::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        lr_t = learning_rate * sqrt(1 - beta2**t) / (1 - beta1**t)
        v_hat = v                                   (amsgrad=False)
        v_max = maximum(v_max, v); v_hat = v_max    (amsgrad=True)
        w = w - lr_t * m / (sqrt(v_hat) + epsilon)

    As in MPS, epsilon is added to sqrt(v_hat) *without* bias correction (PyTorch adds it to
    sqrt(v_hat / (1 - beta2**t))), so the two differ slightly when v is tiny. ``v_max``
    (float32) is required with amsgrad and ignored (left untouched) without it.
    Ranges: learning_rate >= 0, 0 <= beta1, beta2 < 1, epsilon > 0, step >= 1.
    """
    _core.ops.adam_step(
        weights,
        gradients,
        m,
        v,
        step,
        learning_rate,
        beta1,
        beta2,
        epsilon,
        amsgrad,
        v_max,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
    )


def rmsprop_step(
    weights: ArrayLike,
    gradients: ArrayLike,
    s: ArrayLike,
    learning_rate: float = 1e-3,
    decay: float = 0.9,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
) -> None:
    """RMSProp (MPS rule), after the preprocessing above::

        s = decay * s + (1 - decay) * g**2
        w = w - learning_rate * g / (sqrt(s) + epsilon)

    Ranges: learning_rate >= 0, 0 <= decay < 1, epsilon > 0.
    """
    _core.ops.rmsprop_step(
        weights,
        gradients,
        s,
        learning_rate,
        decay,
        epsilon,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
    )


def sgd_step_many(
    weights: Sequence[ArrayLike],
    gradients: Sequence[ArrayLike],
    momentum_buffers: Sequence[ArrayLike] | None = None,
    learning_rate: float = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
    learning_rate_scales: Sequence[float] | None = None,
) -> None:
    """:func:`sgd_step` on every ``weights[i]`` at once (lists of equal length; errors name
    ``weights[i]``), with learning rate ``learning_rate * learning_rate_scales[i]``. All tensors
    are checked before any is updated."""
    _core.ops.sgd_step_many(
        weights,
        gradients,
        momentum_buffers,
        learning_rate,
        momentum,
        nesterov,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
        learning_rate_scales,
    )


def adam_step_many(
    weights: Sequence[ArrayLike],
    gradients: Sequence[ArrayLike],
    m: Sequence[ArrayLike],
    v: Sequence[ArrayLike],
    step: int,
    learning_rate: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    amsgrad: bool = False,
    v_max: Sequence[ArrayLike] | None = None,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
    learning_rate_scales: Sequence[float] | None = None,
) -> None:
    """:func:`adam_step` on every ``weights[i]`` at once (one shared ``step``)."""
    _core.ops.adam_step_many(
        weights,
        gradients,
        m,
        v,
        step,
        learning_rate,
        beta1,
        beta2,
        epsilon,
        amsgrad,
        v_max,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
        learning_rate_scales,
    )


def rmsprop_step_many(
    weights: Sequence[ArrayLike],
    gradients: Sequence[ArrayLike],
    s: Sequence[ArrayLike],
    learning_rate: float = 1e-3,
    decay: float = 0.9,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    gradient_rescale: float = 1.0,
    gradient_clip: tuple[float, float] | None = None,
    regularization: str = "l2",
    learning_rate_scales: Sequence[float] | None = None,
) -> None:
    """:func:`rmsprop_step` on every ``weights[i]`` at once."""
    _core.ops.rmsprop_step_many(
        weights,
        gradients,
        s,
        learning_rate,
        decay,
        epsilon,
        weight_decay,
        gradient_rescale,
        gradient_clip,
        regularization,
        learning_rate_scales,
    )
