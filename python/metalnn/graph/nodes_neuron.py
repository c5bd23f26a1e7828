"""Neuron nodes beyond :mod:`metalnn.graph.nodes`: the neurons with a third coefficient
``c`` (power, exponential, logarithm) and PReLU with learned per-channel slopes.

The ``c`` neurons are filter nodes of their own rather than :class:`NeuronNode`\\ s: the
layer epilogues a NeuronNode can be fused into carry only a and b, so these always run as
separate neuron steps (same kernels as ``mnn.ops.neuron_forward``/``neuron_backward``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .data_source_neuron import PReLUSlopes
from .nodes import FilterNode, ImageNode

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import Compiler
    from .nodes import GradientNode


def _coefficient(owner: str, name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"[{owner}] {name} must be a finite number or None, got {value!r}")
    return float(value)


class _NeuronABCNode(FilterNode):
    """Elementwise ``f(x)`` with MPS coefficients a, b, c (None: the type's default)."""

    neuron_type = "none"

    def __init__(self, source: ImageNode, a: float | None = None, b: float | None = None, c: float | None = None,
                 label: str | None = None):
        super().__init__([source], label)
        self.a = _coefficient(self.kind, "a", a)
        self.b = _coefficient(self.kind, "b", b)
        self.c = _coefficient(self.kind, "c", c)
        if self.c is not None and self.neuron_type in ("exponential", "logarithm") and self.c != -1.0:
            if self.c <= 0 or (self.neuron_type == "logarithm" and self.c == 1.0):
                raise ValueError(f"[{self.kind}] c: the base must be positive"
                                 f"{' and not 1' if self.neuron_type == 'logarithm' else ''} (or -1 for e), "
                                 f"got {self.c}")

    def _args(self) -> tuple:
        return (self.neuron_type, self.a, self.b, self.c)

    def emit_forward(self, c: Compiler) -> None:
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "neuron_forward", x, y, *self._args(), inputs=[x], outputs=[y])

    def emit_gradient(self, c: Compiler, g: GradientNode) -> None:
        if not c.needed(g.result):
            return
        dy, x, dx = c.slot(g.sources[0]), c.slot(self.sources[0]), c.slot(g.result)
        c.emit(g.label, "neuron_backward", dy, x, dx, *self._args(), inputs=[dy, x], outputs=[dx])


class NeuronPowerNode(_NeuronABCNode):
    """``(a*x + b) ** c`` (MPSCNNNeuronPower; defaults a=1, b=0, c=2). NaN where ``a*x + b``
    is negative and c is not an integer."""

    neuron_type = "power"


class NeuronExponentialNode(_NeuronABCNode):
    """``c ** (a*x + b)`` (MPSCNNNeuronExponential; defaults a=1, b=0, c=-1 meaning base e)."""

    neuron_type = "exponential"


class NeuronLogarithmNode(_NeuronABCNode):
    """``log_c(a*x + b)`` (MPSCNNNeuronLogarithm; defaults a=1, b=0, c=-1 meaning base e).
    NaN where ``a*x + b < 0``."""

    neuron_type = "logarithm"


class NeuronPReLUNode(FilterNode):
    """PReLU with one learned slope per feature channel (MPSCNNNeuronPReLUNode)::

        y[n, c, ...] = x if x >= 0 else slopes[c] * x

    ``slopes`` is a :class:`~metalnn.graph.PReLUSlopes` data source (or any data source whose
    descriptor is a depthwise 1x1 ``C -> C`` convolution without bias). Input (N, C, ...).
    The graph trains the slopes with the data source's optimizer.
    """

    trainable = True

    def __init__(self, source: ImageNode, slopes: PReLUSlopes, label: str | None = None):
        super().__init__([source], label or (slopes.label() if callable(getattr(slopes, "label", None)) else None))
        self.data_source = slopes
        self._descriptor = None

    def descriptor(self):
        if self._descriptor is None:
            self._descriptor = self.data_source.descriptor()
        return self._descriptor

    def infer_shape(self, shapes):
        x, d = shapes[0], self.descriptor()
        if d.in_channels != d.out_channels or d.groups != d.out_channels or d.kernel_size != (1, 1):
            raise ValueError(f"the data source must describe one slope per channel (a depthwise 1x1 "
                             f"C -> C convolution), got {d!r}")
        if len(x) < 2:
            raise ValueError(f"expected an input (N, C, ...) of rank >= 2, got {x}")
        if x[1] != d.out_channels:
            raise ValueError(f"input has {x[1]} channels but the data source holds {d.out_channels} slopes")
        return x

    def emit_forward(self, c: Compiler) -> None:
        w, _ = c.graph._parameters(self)
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "prelu_forward", x, y, w, inputs=[x], outputs=[y])

    def emit_gradient(self, c: Compiler, g: GradientNode) -> None:
        w, _ = c.graph._parameters(self)
        dy, x = c.slot(g.sources[0]), c.slot(self.sources[0])
        if c.graph._trains(self):
            ds = c.new_slot(w.value.shape)
            c.emit(g.label, "prelu_backward_slopes", dy, x, ds, w, inputs=[dy, x], outputs=[ds])
            c.updates.append((self, ds, None))  # the graph's optimizer step updates the slopes
        if c.needed(g.result):
            dx = c.slot(g.result)
            c.emit(g.label, "prelu_backward_input", dy, x, dx, w, inputs=[dy, x], outputs=[dx])
