"""Element-wise arithmetic with broadcasting and its gradients (MPSCNNAdd, MPSCNNSubtract,
MPSCNNMultiply, MPSCNNDivide and their gradient kernels).

``a`` (primary) and ``b`` (secondary) have the same rank (1 to 4); along each dimension
their sizes are equal or one of them is 1, which broadcasts: an (N, C, H, W) image with a
(1, C, 1, 1) per-channel, (N, 1, H, W) per-pixel or (1, C, H, W) per-batch secondary
(or the other way round). The result has the larger size along every dimension.

Gradients of ``L = sum(dy * y)``: each operand's gradient has its own shape, the
element-wise term summed over the dimensions it broadcasts along::

    add:       da = sum(dy)          db = sum(dy)
    subtract:  da = sum(dy)          db = -sum(dy)
    multiply:  da = sum(dy * b)      db = sum(dy * a)
    divide:    da = sum(dy / b)      db = -sum(dy * a / b**2)

float32 or float16 storage, computed in float32 and rounded once.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _core
from ._util import ArrayLike

#: The ops of arithmetic_forward / arithmetic_backward.
ARITHMETIC_OPS = ("add", "subtract", "multiply", "divide")


def add_forward(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """y = a + b (broadcasting)."""
    return _core.ops.add_forward(a, b)


def subtract_forward(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """y = a - b (broadcasting)."""
    return _core.ops.subtract_forward(a, b)


def multiply_forward(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """y = a * b (broadcasting)."""
    return _core.ops.multiply_forward(a, b)


def divide_forward(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """y = a / b (broadcasting; IEEE division: x/0 is +-Inf or NaN)."""
    return _core.ops.divide_forward(a, b)


def add_backward(dy: ArrayLike, a_shape: Sequence[int], b_shape: Sequence[int]) -> tuple[ArrayLike, ArrayLike]:
    """(da, db) = (dy summed to a_shape, dy summed to b_shape)."""
    return _core.ops.add_backward(dy, tuple(a_shape), tuple(b_shape))


def subtract_backward(dy: ArrayLike, a_shape: Sequence[int],
                      b_shape: Sequence[int]) -> tuple[ArrayLike, ArrayLike]:
    """(da, db) = (dy summed to a_shape, -dy summed to b_shape)."""
    return _core.ops.subtract_backward(dy, tuple(a_shape), tuple(b_shape))


def multiply_backward(dy: ArrayLike, a: ArrayLike, b: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """(da, db) = (dy*b summed to a's shape, dy*a summed to b's shape)."""
    return _core.ops.multiply_backward(dy, a, b)


def divide_backward(dy: ArrayLike, a: ArrayLike, b: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """(da, db) = (dy/b summed to a's shape, -dy*a/b**2 summed to b's shape)."""
    return _core.ops.divide_backward(dy, a, b)


def arithmetic_forward(op: str, a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """y = a (op) b for ``op`` in :data:`ARITHMETIC_OPS`."""
    return _core.ops.arithmetic_forward(op, a, b)


def arithmetic_backward(op: str, operand: int, dy: ArrayLike, a_shape: Sequence[int], b_shape: Sequence[int],
                        a: ArrayLike | None = None, b: ArrayLike | None = None) -> ArrayLike:
    """One operand's gradient (``operand`` 0 = a, 1 = b); multiply and divide need a and b."""
    return _core.ops.arithmetic_backward(op, operand, dy, tuple(a_shape), tuple(b_shape), a, b)
