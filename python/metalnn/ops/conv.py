"""2-D convolution and its gradients, as MPSCNNConvolution / MPSCNNConvolutionGradient.

Images are NCHW, weights OIHW = (O, C/groups, kH, kW). With stride (sh, sw), dilation
(dh, dw), padding (top, bottom, left, right) and groups G (Cg = C/G, Og = O/G,
g = o // Og)::

    y[n, o, i, j] = bias[o] + sum_{c < Cg, kh, kw} w[o, c, kh, kw]
                    * x[n, g*Cg + c, i*sh - top + kh*dh, j*sw - left + kw*dw]

where x reads 0 outside the image, and

    H_out = (H + top + bottom - dh*(kH - 1) - 1) // sh + 1     (likewise W_out; must be >= 1)

The gradients of L = sum(y * dy)::

    dx[n, g*Cg + c, h, v] = sum_{o in group g, kh, kw, i, j with i*sh - top + kh*dh = h
                                                          and j*sw - left + kw*dw = v}
                            w[o, c, kh, kw] * dy[n, o, i, j]
    dw[o, c, kh, kw]      = sum_{n, i, j} dy[n, o, i, j] * x[n, g*Cg + c, i*sh - top + kh*dh, ...]
    db[o]                 = sum_{n, i, j} dy[n, o, i, j]

``padding`` is an int, ``(ph, pw)`` or ``(top, bottom, left, right)``; asymmetric padding
gives 'same' outputs for even kernels. ``stride`` and ``dilation`` are an int or a pair.

Fused neuron (MPS ``fusedNeuronDescriptor``): with ``neuron`` set, the forward returns::

    y = f(z),   z[n, o, i, j] = bias[o] + sum ... (the convolution above)

where f is the neuron of :mod:`metalnn.ops.neuron` (``neuron_a``, ``neuron_b`` its
coefficients a, b; unset ones take the MPS defaults). f runs in the kernel's epilogue on
each image's output right after its products, not as a second pass over the output.
``return_preactivation=True`` returns ``(y, z)``, so the gradient is
``neuron_backward(dy, z, neuron)`` followed by the convolution gradients. float16 storage
rounds z and y once each (y = half(f(z)) with f in float32); with ``accumulation="half"``
z is the half-accumulated result and y = half(f(z)), f computed in float32. ``neuron=None``
(or ``"none"``) gives exactly the unfused result.

Accumulation (MPS ``accumulatorPrecisionOption``): ``"float"`` sums in float32 and rounds
the result once to the storage type. ``"half"`` needs float16 storage (float32 raises
ValueError): every step ``acc = half(acc + a*b)`` is computed in float32 and rounded to
half, in the fixed order (c, kh, kw) for the forward ((o, kh, kw) for backward_input),
taps in the padding skipped, then ``half(acc + bias)``. Weight gradients always
accumulate in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from .. import _core
from ._util import ArrayLike

IntOrPair = Union[int, Sequence[int]]


def _ints(value, name: str, op: str) -> list[int]:
    """An int or a sequence of ints as a list (the C++ side checks the count and range)."""
    if isinstance(value, bool):
        raise ValueError(f"[{op}] {name} must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, int) or hasattr(value, "__index__"):
        return [int(value)]
    try:
        items = list(value)
    except TypeError:
        msg = f"[{op}] {name} must be an int or a tuple of ints, got {value!r}"
        raise ValueError(msg) from None
    if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in items):
        raise ValueError(f"[{op}] {name} must be an int or a tuple of ints, got {value!r}")
    return [int(v) for v in items]


def _shape(value, name: str, op: str) -> list[int]:
    items = _ints(value, name, op)
    if len(items) == 1 and not hasattr(value, "__len__"):
        raise ValueError(f"[{op}] {name} must be a tuple of ints, got {value!r}")
    return items


def _geometry(op: str, stride: IntOrPair, padding: IntOrPair,
              dilation: IntOrPair) -> list[list[int]]:
    """stride, padding and dilation as lists of ints, in that order."""
    return [_ints(stride, "stride", op), _ints(padding, "padding", op),
            _ints(dilation, "dilation", op)]


def _fused(op: str, neuron: str | None, neuron_a: float | None, neuron_b: float | None,
           return_preactivation: bool) -> dict:
    """The fused-neuron keyword arguments of a forward kernel (shared with linear)."""
    if neuron is not None and not isinstance(neuron, str):
        raise TypeError(f"[{op}] neuron must be a neuron type name (str) or None, got {neuron!r}")
    return {"neuron": neuron, "neuron_a": neuron_a, "neuron_b": neuron_b,
            "return_preactivation": bool(return_preactivation)}


def conv2d_forward(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    accumulation: str = "float",
    neuron: str | None = None,
    neuron_a: float | None = None,
    neuron_b: float | None = None,
    return_preactivation: bool = False,
) -> ArrayLike | tuple[ArrayLike, ArrayLike]:
    """y = f(conv2d(x, weight) + bias), shape (N, O, H_out, W_out); see the module docstring.

    f is the fused ``neuron`` (None: identity). With ``return_preactivation`` returns
    ``(y, z)`` where z = conv2d(x, weight) + bias.
    """
    op = "conv2d_forward"
    return _core.ops.conv2d_forward(
        x, weight, bias, *_geometry(op, stride, padding, dilation), groups, accumulation,
        **_fused(op, neuron, neuron_a, neuron_b, return_preactivation),
    )


def conv2d_backward_input(
    dy: ArrayLike,
    weight: ArrayLike,
    input_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    accumulation: str = "float",
) -> ArrayLike:
    """dx = d(sum(y * dy))/dx, shape ``input_shape`` = (N, C, H, W)."""
    op = "conv2d_backward_input"
    return _core.ops.conv2d_backward_input(
        dy, weight, _shape(input_shape, "input_shape", op),
        *_geometry(op, stride, padding, dilation), groups, accumulation,
    )


def conv2d_backward_weight(
    dy: ArrayLike,
    x: ArrayLike,
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> ArrayLike:
    """dw = d(sum(y * dy))/dw, shape ``weight_shape`` = (O, C/groups, kH, kW).

    Always accumulated in float32.
    """
    op = "conv2d_backward_weight"
    return _core.ops.conv2d_backward_weight(
        dy, x, _shape(weight_shape, "weight_shape", op),
        *_geometry(op, stride, padding, dilation), groups,
    )


def conv2d_backward_bias(dy: ArrayLike) -> ArrayLike:
    """db[o] = sum over n, i, j of dy[n, o, i, j]; shape (O,)."""
    return _core.ops.conv2d_backward_bias(dy)
