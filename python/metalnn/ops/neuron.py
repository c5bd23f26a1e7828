"""Neurons (elementwise activations), as MPSCNNNeuron, plus PReLU with learned slopes.

============  ===========================================  ==============================
type          y = f(x)                                      defaults
============  ===========================================  ==============================
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
softsign      x / (1 + |x|)
power         (a*x + b) ** c                                a=1, b=0, c=2
exponential   c ** (a*x + b)                                a=1, b=0, c=-1 (base e)
logarithm     log_c(a*x + b) = ln(a*x + b) / ln(c)          a=1, b=0, c=-1 (base e)
silu          x * sigmoid(x)
mish          x * tanh(log(1 + exp(x)))
selu          b * (x if x >= 0 else a*(exp(x) - 1))         a=1.6732632 (alpha), b=1.0507010
============  ===========================================  ==============================

The coefficients follow MPS (``MPSNNNeuronDescriptor``'s a, b, c). For exponential and
logarithm, ``c = -1`` stands for the base e; any other base must be positive (and not 1
for logarithm), else ValueError naming ``c``. Out of a function's domain the result is NaN
as in the real-valued math: ``logarithm`` of ``a*x + b < 0``, ``power`` of a negative
``a*x + b`` with a non-integer ``c``; their gradients are NaN there too.

Gradients: ``dx = dy * f'(x)`` with

- softsign: ``1 / (1 + |x|)**2``;  power: ``c*a*(a*x + b)**(c - 1)``;
- exponential: ``a*ln(c) * c**(a*x + b)``;  logarithm: ``a / ((a*x + b) * ln(c))``;
- silu: ``s*(1 + x*(1 - s))`` with ``s = sigmoid(x)``;
- mish: ``t + x*sigmoid(x)*(1 - t**2)`` with ``t = tanh(log(1 + exp(x)))``;
- selu: ``b`` for ``x >= 0``, else ``b*a*exp(x)``.

At a kink the gradient takes the branch that holds x (``x >= 0`` the right side). A NaN
input gives a NaN gradient.
"""

from __future__ import annotations

from .. import _core
from ._util import ArrayLike

NEURON_TYPES = (
    "none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear",
    "absolute", "softplus", "elu", "relun", "gelu",
    "softsign", "power", "exponential", "logarithm", "silu", "mish", "selu",
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


def prelu_forward(x: ArrayLike, slopes: ArrayLike) -> ArrayLike:
    """PReLU with one learned slope per feature channel (MPSCNNNeuronPReLU)::

        y[n, c, ...] = x[n, c, ...]              if x >= 0
                       slopes[c] * x[n, c, ...]  otherwise

    ``x`` is (N, C, ...) of rank >= 2 (images NCHW, matrices (N, C)); ``slopes`` is (C,)
    of x's dtype.
    """
    return _core.ops.prelu_forward(x, slopes)


def prelu_backward_input(dy: ArrayLike, x: ArrayLike, slopes: ArrayLike) -> ArrayLike:
    """dx = dy * (1 if x >= 0 else slopes[c]), where ``x`` is the forward input."""
    return _core.ops.prelu_backward_input(dy, x, slopes)


def prelu_backward_slopes(dy: ArrayLike, x: ArrayLike) -> ArrayLike:
    """The slopes' gradient, shape (C,)::

        dslopes[c] = sum over n and every spatial position of dy * (0 if x >= 0 else x)

    (a NaN in ``x`` makes its channel's gradient NaN).
    """
    return _core.ops.prelu_backward_slopes(dy, x)
