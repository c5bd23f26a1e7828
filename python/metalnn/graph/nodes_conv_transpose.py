"""Transposed convolution in the graph: ConvolutionTransposeNode (MPSCNNConvolutionTransposeNode)
and ConvolutionTransposeWeights, the built-in data source with the transposed weight layout.

The data source is the usual protocol (``descriptor() load() weights() biases() purge()``,
``optimizer`` or ``update``; see :mod:`metalnn.graph.data_source`) with a
:class:`~metalnn.graph.data_source.ConvolutionDescriptor` seen from the transposed layer:
``in_channels`` are the channels of the node's source image and ``out_channels`` those of its
result. Its weights are laid out ``(in_channels, out_channels / groups, kH, kW)`` -- as MPS's
convolution transpose and PyTorch's ``ConvTranspose2d`` -- and its biases ``(out_channels,)``.
That is exactly the ``(O, C/groups, kH, kW)`` weight of the convolution (``out_channels`` ->
``in_channels``) whose transpose the layer is. The descriptor's stride, dilation, groups and
neuron apply; padding and output padding belong to the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data_source import ConvolutionDescriptor, ConvolutionWeights, Parameters, initial_weights, read_parameters
from .nodes import FilterNode, ImageNode, _ds_label, _rank4
from .padding import Padding, PaddingSpec

__all__ = ["ConvolutionTransposeNode", "ConvolutionTransposeWeights", "read_transpose_parameters",
           "adjoint_descriptor"]


def adjoint_descriptor(d: ConvolutionDescriptor) -> ConvolutionDescriptor:
    """The convolution whose transpose ``d`` describes: channels swapped, no neuron. Its
    ``weight_shape`` is the transposed layer's ``(in, out/groups, kH, kW)``."""
    return ConvolutionDescriptor(d.kernel_size, d.out_channels, d.in_channels, d.stride, d.dilation, d.groups)


class _AdjointView:
    """Presents a transposed layer's source to :func:`read_parameters` as its adjoint
    convolution (so the weights are checked against ``(in, out/groups, kH, kW)``); the biases,
    which belong to the transposed output, are taken aside and checked separately."""

    def __init__(self, source: Any, copy: bool):
        self.source, self.copy = source, copy
        self.desc: ConvolutionDescriptor | None = None
        self.bias: np.ndarray | None = None

    def label(self):
        return self.source.label()

    def descriptor(self):
        self.desc = self.source.descriptor()
        if not isinstance(self.desc, ConvolutionDescriptor):
            return self.desc  # read_parameters names the wrong type
        return adjoint_descriptor(self.desc)

    def load(self):
        return self.source.load()

    def weights(self):
        return self.source.weights()

    def biases(self):
        b = self.source.biases()
        if b is not None and isinstance(b, np.ndarray):
            b = np.array(b, order="C", copy=True) if self.copy else np.ascontiguousarray(b)
        self.bias = b
        return None

    def purge(self):
        self.source.purge()


def read_transpose_parameters(source: Any, *, copy: bool = True) -> Parameters:
    """:func:`~metalnn.graph.data_source.read_parameters` for a transposed layer: the same call
    order and checks, weights ``(in, out/groups, kH, kW)`` (or ``(in, out/groups*kH*kW)``),
    biases ``(out,)``; returns the transposed layer's descriptor."""
    view = _AdjointView(source, copy)
    p = read_parameters(view, copy=copy)
    desc = view.desc
    assert desc is not None  # read_parameters asked descriptor() and checked its type
    where = f"[DataSource] {p.label!r}:"
    b = view.bias
    if b is not None:
        if not isinstance(b, np.ndarray):
            raise TypeError(f"{where} biases() must return a numpy array or None, got {type(b).__name__}")
        if b.dtype != p.weights.dtype:
            raise TypeError(f"{where} biases() dtype {b.dtype} does not match the weights' dtype {p.weights.dtype}")
        if b.shape != (desc.out_channels,):
            raise ValueError(f"{where} biases() has shape {b.shape}, expected ({desc.out_channels},)")
    return Parameters(desc, p.weights, b, p.label)


class ConvolutionTransposeWeights(ConvolutionWeights):
    """Built-in data source of a transposed convolution: numpy weights
    ``(in_channels, out_channels / groups, kH, kW)`` and biases ``(out_channels,)``.

    Arguments are those of :class:`~metalnn.graph.data_source.ConvolutionWeights`, with
    ``in_channels`` / ``out_channels`` the transposed layer's own (its source and result
    channels); an explicit ``weights_init`` array has the transposed layout. "he" / "glorot"
    use the fan-in ``out_channels / groups * kH * kW`` of the weight's rows (PyTorch's choice
    for ConvTranspose2d). The graph trains these arrays in place.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=1, *, neuron: str | None = None,
                 neuron_a: float | None = None, neuron_b: float | None = None, bias=True, label: str | None = None,
                 **kw: Any) -> None:
        owner = "ConvolutionTransposeWeights"
        # The transposed layer's own descriptor (validates everything, neuron included) ...
        self._transposed = ConvolutionDescriptor._create(
            owner, kernel_size=kernel_size, in_channels=in_channels, out_channels=out_channels,
            stride=kw.get("stride", 1), dilation=kw.get("dilation", 1), groups=kw.get("groups", 1),
            neuron=neuron, neuron_a=neuron_a, neuron_b=neuron_b)
        # ... and the parent holds the adjoint convolution's weights (out -> in), without bias.
        super().__init__(out_channels, in_channels, kernel_size, bias=False,
                         label=label if label is not None else
                         f"convT{self._transposed.kernel_h}x{self._transposed.kernel_w}_{in_channels}to{out_channels}",
                         **kw)
        self._bias_init: np.ndarray | None = None
        if isinstance(bias, (bool, np.bool_)):
            self.has_bias = bool(bias)
        elif isinstance(bias, np.ndarray):
            if bias.dtype.kind != "f":
                raise TypeError(f"[{owner}] bias must hold floating point numbers, got dtype {bias.dtype}")
            if bias.shape != (out_channels,):
                raise ValueError(f"[{owner}] bias has shape {bias.shape}, expected ({out_channels},)")
            self._bias_init = np.array(bias, dtype=self.dtype, copy=True)
            self.has_bias = True
        else:
            raise TypeError(f"[{owner}] bias must be True, False or a numpy array, got {type(bias).__name__}")

    def descriptor(self) -> ConvolutionDescriptor:
        return self._transposed

    def load(self) -> bool:
        # Weights (in, out/groups, kH, kW): the adjoint convolution's, drawn from its fan-in.
        if self.weight_array is None:
            self.weight_array = (self._init_array.copy() if self._init_array is not None
                                 else initial_weights(self._descriptor, self.weights_init, self.seed, self.dtype))
        if self.has_bias and self.bias_array is None:
            self.bias_array = (self._bias_init.copy() if self._bias_init is not None
                               else np.zeros(self._transposed.out_channels, dtype=self.dtype))
        return True

    def __repr__(self) -> str:
        return (f"ConvolutionTransposeWeights({self._transposed!r}, dtype={self.dtype.name}, bias={self.has_bias}, "
                f"label={self.label()!r}, optimizer={self.optimizer!r})")


def _explicit_pair(value, name: str, owner: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ValueError(f"[{owner}] {name} must be an int >= 0 or a pair of them, got {value!r}")
    return int(value[0]), int(value[1])


class ConvolutionTransposeNode(FilterNode):
    """Transposed convolution with weights from a data source (MPSCNNConvolutionTransposeNode):
    the adjoint of a convolution, used to upsample (stride > 1) in decoders.

    ``padding`` removes rows / columns from the output (an int, ``(ph, pw)`` or
    ``(top, bottom, left, right)``), or is a policy: ``"valid"`` (none) or ``"same"`` (output
    ``H * stride``: padding ``d*(k - 1) + 1 - s`` split with the odd pixel at the bottom/right,
    or output padding ``s - d*(k - 1) - 1`` when the kernel is shorter than the stride).
    ``output_padding`` (``< stride``) adds rows / columns at the bottom / right. Output::

        H_out = (H - 1)*s - top - bottom + d*(kH - 1) + output_padding + 1

    The math and weight layout are those of :func:`metalnn.ops.conv_transpose2d_forward`; stride,
    dilation, groups and the fused neuron come from the data source's descriptor.
    """

    trainable = True

    def __init__(self, source: ImageNode, weights, padding: PaddingSpec = 0, output_padding=0,
                 label: str | None = None, accumulation: str = "float"):
        super().__init__([source], label or _ds_label(weights))
        self.data_source = weights
        self._descriptor: ConvolutionDescriptor | None = None
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"[{self.kind}] padding: unknown policy {padding!r} (expected 'same', 'valid' or numbers)")
        if callable(padding) and not isinstance(padding, Padding):
            raise ValueError(f"[{self.kind}] padding: custom policies are not supported by transposed convolution")
        self.padding = Padding.of(padding, self.kind)
        self.output_padding = _explicit_pair(output_padding, "output_padding", self.kind)
        if self.padding.kind == "same" and self.output_padding != (0, 0):
            raise ValueError(f"[{self.kind}] output_padding must be 0 with padding='same' (it is derived)")
        if accumulation not in ("float", "half"):
            raise ValueError(f"[{self.kind}] accumulation must be 'float' or 'half', got {accumulation!r}")
        self.accumulation = accumulation

    # The graph reads this node's parameters with the transposed layout (see the module docstring).
    read_parameters = staticmethod(read_transpose_parameters)

    def descriptor(self) -> ConvolutionDescriptor:
        d = self._descriptor
        if d is None:
            d = self._descriptor = self.data_source.descriptor()
        return d

    def _resolve(self, h: int, w: int, d: ConvolutionDescriptor):
        """(top, bottom, left, right) and the output padding for an (h, w) input."""
        if self.padding.kind == "same":
            halves: list[int] = []
            extra: list[int] = []
            for k, s, dil in ((d.kernel_h, d.stride_h, d.dilation_h), (d.kernel_w, d.stride_w, d.dilation_w)):
                total = dil * (k - 1) + 1 - s
                halves += [max(total, 0) // 2, max(total, 0) - max(total, 0) // 2]
                extra.append(max(-total, 0))
            return tuple(halves), tuple(extra)
        pads = self.padding.resolve((h, w), d.kernel_size, d.stride, d.dilation, self.kind)
        return pads, self.output_padding

    def infer_shape(self, shapes):
        (n, c, h, w), d = _rank4(self, shapes[0]), self.descriptor()
        if c != d.in_channels:
            raise ValueError(f"input has {c} channels but the data source expects {d.in_channels}")
        pads, op = self._resolve(h, w, d)
        if op[0] >= d.stride_h or op[1] >= d.stride_w:
            raise ValueError(f"output_padding {op} must be smaller than the stride {d.stride}")
        oh = (h - 1) * d.stride_h - pads[0] - pads[1] + d.dilation_h * (d.kernel_h - 1) + op[0] + 1
        ow = (w - 1) * d.stride_w - pads[2] - pads[3] + d.dilation_w * (d.kernel_w - 1) + op[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"output would be {oh}x{ow} for input {h}x{w} with padding {pads}")
        self.resolved_padding, self.resolved_output_padding = pads, op
        return (n, d.out_channels, oh, ow)

    def _geometry(self) -> tuple:
        d = self.descriptor()
        return ([d.stride_h, d.stride_w], list(self.resolved_padding), list(self.resolved_output_padding),
                [d.dilation_h, d.dilation_w], d.groups)

    def emit_forward(self, c) -> None:
        d, (w, b) = self.descriptor(), c.graph._parameters(self)
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        neuron = c._neuron_args(d.neuron, d.neuron_a, d.neuron_b) if d.neuron else (None, None, None)
        pre = -1
        if d.neuron and self in c.graph._differentiated:  # the neuron's gradient reads z
            pre = self._pre = c.new_slot(c.shape(self.result), c.graph._itemsize.get(self.sources[0], 4))
        c.emit(self.label, "conv_transpose2d_forward", x, y, w, b, *self._geometry(), self.accumulation, *neuron,
               pre, inputs=[x], outputs=[y] + ([pre] if pre >= 0 else []))

    def emit_gradient(self, c, g) -> None:
        d, (w, b) = self.descriptor(), c.graph._parameters(self)
        dy = c.slot(g.sources[0])
        if d.neuron:
            dz = c.new_slot(c.shape(self.result))
            c.emit(g.label, "neuron_backward", dy, self._pre, dz, *c._neuron_args(d.neuron, d.neuron_a, d.neuron_b),
                   inputs=[dy, self._pre], outputs=[dz])
            dy = dz
        x = c.slot(self.sources[0])
        geometry = self._geometry()
        if c.graph._trains(self):
            dw = c.new_slot(w.value.shape)
            c.emit(g.label, "conv_transpose2d_backward_weight", dy, x, dw, list(w.value.shape), *geometry,
                   inputs=[dy, x], outputs=[dw])
            db = None
            if b is not None:
                db = c.new_slot(b.value.shape)
                c.emit(g.label, "conv_transpose2d_backward_bias", dy, db, inputs=[dy], outputs=[db])
            c.updates.append((self, dw, db))
        if c.needed(g.result):
            dx = c.slot(g.result)
            c.emit(g.label, "conv_transpose2d_backward_input", dy, dx, w, list(c.shape(self.sources[0])), *geometry,
                   self.accumulation, inputs=[dy], outputs=[dx])
