"""Neurons (elementwise activations), as MPSCNNNeuron.

============  ===========================================  ============
type          y = f(x)                                      defaults
============  ===========================================  ============
none          x
relu          x if x >= 0 else a*x                          a=0
leaky_relu    x if x >= 0 else a*x                          a=0.01
sigmoid       1 / (1 + exp(-x))
hard_sigmoid  clamp(a*x + b, 0, 1)                          a=0.2, b=0.5
tanh          a * tanh(b*x)                                 a=1, b=1
linear        a*x + b                                       a=1, b=0
absolute      |x|
softplus      a * log(1 + exp(b*x))                         a=1, b=1
elu           x if x >= 0 else a*(exp(x) - 1)               a=1
relun         min(x if x >= 0 else a*x, b)                  a=0, b=6
gelu          x * Phi(x) = x/2 * (1 + erf(x/sqrt(2)))
============  ===========================================  ============

At a kink the gradient takes the branch that holds x (``x >= 0`` the right side).
"""

from __future__ import annotations

from .. import _core
from ._util import ArrayLike

NEURON_TYPES = (
    "none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear",
    "absolute", "softplus", "elu", "relun", "gelu",
)


def neuron_forward(
    x: ArrayLike, type: str, a: float | None = None, b: float | None = None, c: float | None = None
) -> ArrayLike:
    """y = f(x) elementwise (any shape, float32 or float16); see the module table for f."""
    return _core.ops.neuron_forward(x, type, a, b, c)


def neuron_backward(
    dy: ArrayLike,
    x: ArrayLike,
    type: str,
    a: float | None = None,
    b: float | None = None,
    c: float | None = None,
) -> ArrayLike:
    """dx = dy * f'(x), where ``x`` is the forward input."""
    return _core.ops.neuron_backward(dy, x, type, a, b, c)
