"""2-D max, average, L2-norm and dilated max pooling over NCHW images, as MPSCNNPoolingMax /
MPSCNNPoolingAverage / MPSCNNPoolingL2Norm / MPSCNNDilatedPoolingMax.

Window ``(i, j)`` of an ``(N, C, H, W)`` input covers rows ``i*sH - top + [0, kH)`` and
columns ``j*sW - left + [0, kW)``; positions outside the input are padding. The output
has ``H_out = (H + top + bottom - kH) // sH + 1`` (likewise ``W_out``), which must be at
least 1, and every window must hold at least one input element.

``padding`` is an int, a pair ``(pH, pW)`` or ``(top, bottom, left, right)``;
``stride`` defaults to ``kernel_size``. float32 or float16 storage, computed in float32.

Dilated windows (``dilated_max_pool2d_forward``, ``l2_pool2d_*`` with ``dilation``): window
``(i, j)`` reads rows ``i*sH - top + kh*dH`` for ``kh < kH`` (likewise columns), so

    H_out = (H + top + bottom - dH*(kH - 1) - 1) // sH + 1

and every window must read at least one input element (taps in the padding are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from .. import _core
from ._util import ArrayLike

IntOrPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], tuple[int, int, int, int]]

#: The state max_pool2d_forward returns (a subclass of :class:`metalnn.State`).
MaxPool2dState = _core.ops.MaxPool2dState


def max_pool2d_forward(
    x: ArrayLike, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: Padding = 0
) -> tuple[ArrayLike, MaxPool2dState]:
    """y[n, c, i, j] = max over window (i, j) of x[n, c]; returns ``(y, state)``.

    Padding never wins (it acts as -inf). Ties go to the first maximum in row-major
    window order. A NaN in a window wins: y is NaN and the gradient goes to the first
    NaN. ``state.argmax`` holds, per output element, the winner's index ``h*W + w`` in
    its input plane (int32).
    """
    return _core.ops.max_pool2d_forward(x, kernel_size, stride, padding)


def max_pool2d_backward(dy: ArrayLike, state: MaxPool2dState) -> ArrayLike:
    """dx[n, c, h, w] = sum of dy[n, c, i, j] over the windows (i, j) whose argmax is (h, w).

    ``dy`` has the forward output's shape and dtype; ``state`` is the forward's state.
    """
    return _core.ops.max_pool2d_backward(dy, state)


def avg_pool2d_forward(
    x: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: Padding = 0,
    count_include_pad: bool = True,
) -> ArrayLike:
    """y[n, c, i, j] = sum over window (i, j) of x[n, c] / d.

    d = kH*kW when ``count_include_pad`` (padding counts as zeros), else the number
    of input (non-padding) elements in the window.
    """
    return _core.ops.avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad)


def avg_pool2d_backward(
    dy: ArrayLike,
    input_shape: Sequence[int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: Padding = 0,
    count_include_pad: bool = True,
) -> ArrayLike:
    """dx[n, c, h, w] = sum over the windows (i, j) holding (h, w) of dy[n, c, i, j] / d(i, j).

    ``input_shape`` is the forward input's (N, C, H, W); the other arguments are the forward's.
    """
    return _core.ops.avg_pool2d_backward(
        dy, tuple(input_shape), kernel_size, stride, padding, count_include_pad
    )


def dilated_max_pool2d_forward(
    x: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
) -> tuple[ArrayLike, MaxPool2dState]:
    """y[n, c, i, j] = max over kh < kH, kw < kW of x[n, c, i*sH - top + kh*dH, j*sW - left + kw*dW]
    (MPSCNNDilatedPoolingMax); returns ``(y, state)``.

    Taps in the padding never win; ties go to the first tap in row-major window order; a NaN
    wins. The gradient is :func:`max_pool2d_backward` with ``state`` (``state.argmax`` holds the
    winner's index ``h*W + w`` in its plane).
    """
    return _core.ops.dilated_max_pool2d_forward(x, kernel_size, stride, padding, dilation)


def l2_pool2d_forward(
    x: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
) -> ArrayLike:
    """y[n, c, i, j] = sqrt(sum over the window's taps of x[n, c, h, w]**2) (MPSCNNPoolingL2Norm).

    Padding contributes nothing (it acts as 0); the sum is taken in float32.
    """
    return _core.ops.l2_pool2d_forward(x, kernel_size, stride, padding, dilation)


def l2_pool2d_backward(
    dy: ArrayLike,
    x: ArrayLike,
    y: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
) -> ArrayLike:
    """dx[n, c, h, w] = x[n, c, h, w] * sum over the windows (i, j) holding (h, w) of
    dy[n, c, i, j] / y[n, c, i, j], a window with y == 0 contributing 0 (the subgradient at 0).

    ``x`` and ``y`` are the forward's input and output; the other arguments are the forward's.
    """
    return _core.ops.l2_pool2d_backward(dy, x, y, kernel_size, stride, padding, dilation)
