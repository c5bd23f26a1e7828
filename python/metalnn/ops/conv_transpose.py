"""2-D transposed convolution and its gradients, as MPSCNNConvolutionTranspose /
MPSCNNConvolutionTransposeGradient.

The transposed convolution is the adjoint (the input gradient) of :func:`conv2d_forward`
with the same weights. Images are NCHW; weights are ``(C_in, C_out/groups, kH, kW)`` -- the
layout of MPS and of PyTorch's ``ConvTranspose2d``: ``w[c]`` spreads input channel ``c`` over
the ``C_out/groups`` output channels of its group. With stride (sh, sw), padding
(top, bottom, left, right), dilation (dh, dw), output padding (oph, opw) and groups G
(Cg = C_in/G input and Og = C_out/G output channels per group, g = c // Cg)::

    z[n, g*Og + o, i*sh - top + kh*dh, j*sw - left + kw*dw] += w[c, o, kh, kw] * x[n, c, i, j]
    y = f(z + bias[o])

summed over every input position (i, j), channel c, o < Og and tap (kh, kw); positions that fall
outside the output are dropped. The output size is::

    H_out = (H - 1)*sh - top - bottom + dh*(kH - 1) + oph + 1      (likewise W_out; >= 1)

``output_padding`` (``0 <= op < stride``) adds rows / columns at the bottom / right, which picks
one of the ``stride`` output sizes a convolution maps back to ``H``. Written as conv ops::

    forward(x, w)                 = conv2d_backward_input(dy=x, weight=w, input_shape=y.shape)
    backward_input(dy, w)         = conv2d_forward(dy, w)                         (no bias)
    backward_weight(dy, x)        = conv2d_backward_weight(dy=x, x=dy, weight_shape=w.shape)
    backward_bias(dy)[o]          = sum over n, i, j of dy[n, o, i, j]

which is how every backend runs it. ``neuron`` fuses an activation after the bias (see
:mod:`metalnn.ops.conv`); ``return_preactivation=True`` returns ``(y, z + bias)``. float16
storage: the products are rounded to float16 once, then the biased value and f of it once each.
``accumulation="half"`` (float16 only) accumulates the products in half as the conv kernels do.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _core
from ._util import ArrayLike
from .conv import IntOrPair, _fused, _ints, _shape


def _geometry(op: str, stride, padding, output_padding, dilation) -> list[list[int]]:
    return [_ints(stride, "stride", op), _ints(padding, "padding", op),
            _ints(output_padding, "output_padding", op), _ints(dilation, "dilation", op)]


def conv_transpose2d_output_size(size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0),
                                 dilation: int = 1, output_padding: int = 0) -> int:
    """H_out = (H - 1)*s - top - bottom + d*(k - 1) + output_padding + 1 along one axis."""
    return (size - 1) * stride - padding[0] - padding[1] + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d_forward(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    accumulation: str = "float",
    neuron: str | None = None,
    neuron_a: float | None = None,
    neuron_b: float | None = None,
    return_preactivation: bool = False,
) -> ArrayLike | tuple[ArrayLike, ArrayLike]:
    """y = f(conv_transpose2d(x, weight) + bias), shape (N, C_out, H_out, W_out).

    ``weight`` is (C_in, C_out/groups, kH, kW); see the module docstring.
    """
    op = "conv_transpose2d_forward"
    return _core.ops.conv_transpose2d_forward(
        x, weight, bias, *_geometry(op, stride, padding, output_padding, dilation), groups, accumulation,
        **_fused(op, neuron, neuron_a, neuron_b, return_preactivation),
    )


def conv_transpose2d_backward_input(
    dy: ArrayLike,
    weight: ArrayLike,
    input_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    accumulation: str = "float",
) -> ArrayLike:
    """dx = d(sum(y * dy))/dx = conv2d(dy, weight), shape ``input_shape`` = (N, C_in, H, W)."""
    op = "conv_transpose2d_backward_input"
    return _core.ops.conv_transpose2d_backward_input(
        dy, weight, _shape(input_shape, "input_shape", op),
        *_geometry(op, stride, padding, output_padding, dilation), groups, accumulation,
    )


def conv_transpose2d_backward_weight(
    dy: ArrayLike,
    x: ArrayLike,
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> ArrayLike:
    """dw[c, o, kh, kw] = sum_{n, i, j} x[n, c, i, j] * dy[n, g*Og + o, i*sh - top + kh*dh, j*sw - left + kw*dw],
    shape ``weight_shape`` = (C_in, C_out/groups, kH, kW); accumulated in float32."""
    op = "conv_transpose2d_backward_weight"
    return _core.ops.conv_transpose2d_backward_weight(
        dy, x, _shape(weight_shape, "weight_shape", op),
        *_geometry(op, stride, padding, output_padding, dilation), groups,
    )


def conv_transpose2d_backward_bias(dy: ArrayLike) -> ArrayLike:
    """db[o] = sum over n, i, j of dy[n, o, i, j]; shape (C_out,)."""
    return _core.ops.conv_transpose2d_backward_bias(dy)
