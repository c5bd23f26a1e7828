"""Fully connected layers, as MPSCNNFullyConnected: a convolution whose kernel covers the
whole input.

x is (N, F) or an image batch (N, C, H, W) with F = C*H*W (flattened in C, H, W order);
weight is (O, F) or (O, C, H, W) (when both are 4-D their (C, H, W) must match)::

    y[n, o]  = bias[o] + sum_f x[n, f] * w[o, f]           y is (N, O)
    dx[n, f] = sum_o dy[n, o] * w[o, f]                     reshaped to input_shape
    dw[o, f] = sum_n dy[n, o] * x[n, f]                     reshaped to weight_shape
    db[o]    = sum_n dy[n, o]

``accumulation`` as in :mod:`metalnn.ops.conv`: ``"float"`` (default) or ``"half"``
(float16 storage only; ``acc = half(acc + a*b)`` over f in order for the forward, over o
in order for backward_input, then ``half(acc + bias)``). Weight gradients accumulate in
float32.

Fused neuron, as in :mod:`metalnn.ops.conv`: with ``neuron`` set the forward returns
``y = f(z)``, ``z[n, o] = bias[o] + sum_f x[n, f] * w[o, f]``, f applied to each output
panel right after its product; ``return_preactivation=True`` returns ``(y, z)`` for
``neuron_backward(dy, z, neuron)``. float16 and ``accumulation="half"``: y = half(f(z)) with
f in float32, z rounded as the unfused output.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _core
from ._util import ArrayLike
from .conv import _fused, _shape


def fully_connected_forward(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    accumulation: str = "float",
    neuron: str | None = None,
    neuron_a: float | None = None,
    neuron_b: float | None = None,
    return_preactivation: bool = False,
) -> ArrayLike | tuple[ArrayLike, ArrayLike]:
    """y = f(x @ weight.T + bias) with x and weight flattened to (N, F) and (O, F); y is (N, O).

    f is the fused ``neuron`` (None: identity). With ``return_preactivation`` returns
    ``(y, z)`` where z = x @ weight.T + bias.
    """
    op = "fully_connected_forward"
    return _core.ops.fully_connected_forward(
        x, weight, bias, accumulation,
        **_fused(op, neuron, neuron_a, neuron_b, return_preactivation),
    )


def fully_connected_backward_input(
    dy: ArrayLike, weight: ArrayLike, input_shape: Sequence[int], accumulation: str = "float"
) -> ArrayLike:
    """dx = dy @ weight (flattened), shape ``input_shape`` ((N, F) or (N, C, H, W))."""
    op = "fully_connected_backward_input"
    return _core.ops.fully_connected_backward_input(
        dy, weight, _shape(input_shape, "input_shape", op), accumulation
    )


def fully_connected_backward_weight(
    dy: ArrayLike, x: ArrayLike, weight_shape: Sequence[int] | None = None
) -> ArrayLike:
    """dw = dy.T @ x (flattened), shape ``weight_shape`` (default (O, F))."""
    op = "fully_connected_backward_weight"
    ws = None if weight_shape is None else _shape(weight_shape, "weight_shape", op)
    return _core.ops.fully_connected_backward_weight(dy, x, ws)


def fully_connected_backward_bias(dy: ArrayLike) -> ArrayLike:
    """db[o] = sum_n dy[n, o]; shape (O,)."""
    return _core.ops.fully_connected_backward_bias(dy)
