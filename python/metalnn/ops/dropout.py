"""Dropout, as MPSCNNDropout.

Forward::

    u[i]    = hash(seed, i) / 2**24        in [0, 1), i the flat (C-order) element index
    mask[i] = 1 if u[i] < keep_probability else 0
    y       = x * mask / keep_probability

The hash (splitmix64's finalizer over a per-seed key plus the index; see
``cpp/kernels/dropout_params.h``) is counter-based: the mask depends only on ``seed`` and
the element index, so it is the same on every backend and any thread count. The gradient
reuses the forward's mask::

    dx = dy * mask / keep_probability

keep_probability is in (0, 1]; 1 is the identity. float32 and float16 (computed in
float32, rounded once). A NaN or Inf input gives NaN where dropped (0 * NaN), as the
formula says.
"""

from __future__ import annotations

from .. import _core
from ._util import ArrayLike

#: The state dropout_forward returns: ``.mask`` (uint8 numpy array, 1 = kept),
#: ``.keep_probability``, ``.seed``, ``.shape``.
DropoutState = _core.ops.DropoutState


def dropout_forward(
    x: ArrayLike, keep_probability: float = 0.5, seed: int = 0
) -> tuple[ArrayLike, DropoutState]:
    """y = x * mask / keep_probability; returns ``(y, state)`` (see the module docstring)."""
    return _core.ops.dropout_forward(x, keep_probability, seed)


def dropout_backward(dy: ArrayLike, state: DropoutState) -> ArrayLike:
    """dx = dy * mask / keep_probability, with the mask in ``state`` (from dropout_forward)."""
    return _core.ops.dropout_backward(dy, state)
