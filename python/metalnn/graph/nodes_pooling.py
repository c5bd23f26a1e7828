"""L2-norm and dilated max pooling nodes (MPSCNNPoolingL2NormNode, MPSCNNDilatedPoolingMaxNode).

The math is that of :func:`metalnn.ops.l2_pool2d_forward` and
:func:`metalnn.ops.dilated_max_pool2d_forward`: window ``(i, j)`` reads rows
``i*sH - top + kh*dH`` (``kh < kH``) and columns likewise, padding taps skipped. ``padding`` is a
policy ("valid", "same"), numbers or a callable, as for the other pooling nodes.
"""

from __future__ import annotations

from .nodes import FilterNode, ImageNode, _pair, _rank4
from .padding import Padding, PaddingSpec

__all__ = ["DilatedPoolingMaxNode", "PoolingL2NormNode"]


class _DilatedPoolingNode(FilterNode):
    def __init__(self, source: ImageNode, kernel_size=2, stride=None, padding: PaddingSpec = "valid", dilation=1,
                 label: str | None = None):
        super().__init__([source], label)
        self.kernel = _pair(kernel_size, "kernel_size", self.kind)
        self.stride = self.kernel if stride is None else _pair(stride, "stride", self.kind)
        self.dilation = _pair(dilation, "dilation", self.kind)
        self.padding = Padding.of(padding, self.kind)

    def infer_shape(self, shapes):
        n, c, h, w = _rank4(self, shapes[0])
        pads = self.padding.resolve((h, w), self.kernel, self.stride, self.dilation, self.kind)
        oh = (h + pads[0] + pads[1] - self.dilation[0] * (self.kernel[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + pads[2] + pads[3] - self.dilation[1] * (self.kernel[1] - 1) - 1) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"output would be {oh}x{ow} for input {h}x{w}")
        self.resolved_padding = pads
        return (n, c, oh, ow)

    def _window(self) -> list:
        return [list(self.kernel), list(self.stride), list(self.resolved_padding), list(self.dilation)]


class PoolingL2NormNode(_DilatedPoolingNode):
    """L2-norm pooling ``y = sqrt(sum of x**2 over the window)`` (MPSCNNPoolingL2NormNode);
    ``dilation`` spaces the window's taps (1: the plain window). Its gradient reads the
    forward's input and output."""

    def emit_forward(self, c) -> None:
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "l2_pool2d_forward", x, y, *self._window(), inputs=[x], outputs=[y])

    def emit_gradient(self, c, g) -> None:
        if not c.needed(g.result):
            return
        dy, x, y, dx = c.slot(g.sources[0]), c.slot(self.sources[0]), c.slot(self.result), c.slot(g.result)
        c.emit(g.label, "l2_pool2d_backward", dy, x, y, dx, *self._window(), inputs=[dy, x, y], outputs=[dx])


class DilatedPoolingMaxNode(_DilatedPoolingNode):
    """Max pooling over dilated windows (MPSCNNDilatedPoolingMaxNode), default dilation 2;
    its gradient uses the forward's argmax state."""

    def __init__(self, source: ImageNode, kernel_size=2, stride=None, padding: PaddingSpec = "valid", dilation=2,
                 label: str | None = None):
        super().__init__(source, kernel_size, stride, padding, dilation, label)

    def emit_forward(self, c) -> None:
        x, y, s = c.slot(self.sources[0]), c.slot(self.result), c.new_state()
        self._state = s
        c.emit(self.label, "dilated_max_pool2d_forward", x, y, s, *self._window(), inputs=[x], outputs=[y],
               states_out=[s])

    def emit_gradient(self, c, g) -> None:
        if not c.needed(g.result):
            return
        dy, dx = c.slot(g.sources[0]), c.slot(g.result)
        c.emit(g.label, "max_pool2d_backward", dy, self._state, dx, inputs=[dy], outputs=[dx], states_in=[self._state])
