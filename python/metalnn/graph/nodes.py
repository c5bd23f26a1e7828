"""Graph nodes, named after MPS without the MPSCNN/MPSNN prefix.

Image nodes are data handles; filter nodes are operations with a ``.result`` image
node. Every forward filter has ``gradient_filter(source)``, which returns its gradient
node: a filter whose result is the gradient with respect to the forward filter's
(first) source, given the gradient of its result as ``source``. Gradient nodes of
trainable filters also produce weight gradients, handed to the data source's
``update`` (or its optimizer) by the graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .padding import Padding, PaddingSpec

if TYPE_CHECKING:  # pragma: no cover
    from .compiler import Compiler

_ids = itertools.count()


def _pair(value, name: str, owner: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"[{owner}] {name} must be an int or a pair of ints, got {value!r}")
    if value[0] < 1 or value[1] < 1:
        raise ValueError(f"[{owner}] {name} must be positive, got {tuple(value)}")
    return int(value[0]), int(value[1])


class ImageNode:
    """A batch of images (or matrices) flowing between filters.

    An image node without a producer is a graph source, fed by ``encode_batch``. Set
    ``export_from_graph = True`` to read an intermediate result from batch handles.
    """

    def __init__(self, name: str | None = None, *, producer: FilterNode | None = None):
        self.id = next(_ids)
        self.producer = producer
        self.name = name or (f"{producer.label}.result" if producer else f"source{self.id}")
        self.export_from_graph = False

    def __repr__(self) -> str:
        return f"ImageNode({self.name!r})"


class FilterNode:
    """Base of every operation node."""

    #: Nodes that hold weights (a data source) and get weight gradients.
    trainable = False

    def __init__(self, sources: Sequence[ImageNode], label: str | None = None):
        kind = type(self).__name__
        for i, s in enumerate(sources):
            if not isinstance(s, ImageNode):
                raise TypeError(f"[{kind}] source {i} must be an ImageNode (use node.result), "
                                f"got {type(s).__name__}")
        self.id = next(_ids)
        self.sources = list(sources)
        self.label = label or f"{kind}_{self.id}"
        self.result = ImageNode(producer=self)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def gradient_filter(self, source: ImageNode) -> GradientNode:
        """The gradient node of this filter, fed the gradient of ``self.result``."""
        return self.gradient_filters(source)[0]

    def gradient_filters(self, source: ImageNode) -> list[GradientNode]:
        """One gradient node per source (a filter with two inputs gives two)."""
        return [GradientNode(self, source, i) for i in range(len(self.sources))]

    # -- used by the compiler -------------------------------------------------
    def infer_shape(self, shapes: list[tuple]) -> tuple:
        return shapes[0]

    def emit_forward(self, c: Compiler) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def emit_gradient(self, c: Compiler, g: GradientNode) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.kind}({self.label!r})"


class GradientNode(FilterNode):
    """Gradient of ``forward`` with respect to its source ``input_index``."""

    def __init__(self, forward: FilterNode, source_gradient: ImageNode, input_index: int = 0,
                 label: str | None = None):
        if not isinstance(forward, FilterNode) or isinstance(forward, GradientNode):
            raise TypeError(f"[GradientNode] forward must be a forward filter node, got {forward!r}")
        self.forward = forward
        self.input_index = input_index
        super().__init__([source_gradient], label or f"{forward.label}.gradient{input_index or ''}")

    @property
    def kind(self) -> str:
        return f"{self.forward.kind}Gradient"

    def gradient_filters(self, source):
        raise TypeError(f"[{self.kind}] gradient nodes have no gradient")

    def infer_shape(self, shapes):
        return None  # the compiler takes the forward source's shape

    def emit_forward(self, c):
        self.forward.emit_gradient(c, self)


class ConvolutionNode(FilterNode):
    """2-D convolution with weights from a data source (MPSCNNConvolutionNode).

    ``padding`` is a policy (default ``"same"``); stride, dilation, groups and the
    fused neuron come from the data source's descriptor.
    """

    trainable = True

    def __init__(self, source: ImageNode, weights, padding: PaddingSpec = "same", label: str | None = None,
                 accumulation: str = "float"):
        super().__init__([source], label or _ds_label(weights))
        self.data_source = weights
        self._descriptor = None
        self.padding = Padding.of(padding, self.kind)
        if accumulation not in ("float", "half"):
            raise ValueError(f"[{self.kind}] accumulation must be 'float' or 'half', got {accumulation!r}")
        self.accumulation = accumulation

    def descriptor(self):
        """The data source's descriptor, asked once (the first call in the documented order)."""
        if self._descriptor is None:
            self._descriptor = self.data_source.descriptor()
        return self._descriptor

    def infer_shape(self, shapes):
        (n, c, h, w), d = _rank4(self, shapes[0]), self.descriptor()
        if c != d.in_channels:
            raise ValueError(f"input has {c} channels but the data source expects {d.in_channels}")
        pads = self.padding.resolve((h, w), (d.kernel_h, d.kernel_w), (d.stride_h, d.stride_w),
                                    (d.dilation_h, d.dilation_w), self.kind)
        oh = (h + pads[0] + pads[1] - d.dilation_h * (d.kernel_h - 1) - 1) // d.stride_h + 1
        ow = (w + pads[2] + pads[3] - d.dilation_w * (d.kernel_w - 1) - 1) // d.stride_w + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"output would be {oh}x{ow} for input {h}x{w} with padding {pads}")
        self.resolved_padding = pads
        return (n, d.out_channels, oh, ow)

    def emit_forward(self, c):
        c.emit_layer(self)

    def emit_gradient(self, c, g):
        c.emit_layer_gradient(self, g)


class FullyConnectedNode(ConvolutionNode):
    """Fully connected layer: a convolution whose kernel covers the whole input
    (MPSCNNFullyConnectedNode). Input (N, C, H, W) or (N, F); result (N, O)."""

    def __init__(self, source: ImageNode, weights, label: str | None = None, accumulation: str = "float"):
        super().__init__(source, weights, "valid", label, accumulation)

    def infer_shape(self, shapes):
        x, d = shapes[0], self.descriptor()
        if len(x) not in (2, 4):
            raise ValueError(f"expected (N, F) or (N, C, H, W) input, got {x}")
        features = 1
        for v in x[1:]:
            features *= v
        expected = d.in_channels * d.kernel_h * d.kernel_w
        if features != expected:
            raise ValueError(f"input has {features} features per sample but the data source expects "
                             f"{expected} (in_channels {d.in_channels} x kernel {d.kernel_h}x{d.kernel_w})")
        return (x[0], d.out_channels)


class _PoolingNode(FilterNode):
    def __init__(self, source: ImageNode, kernel_size=2, stride=None, padding: PaddingSpec = "valid",
                 label: str | None = None):
        super().__init__([source], label)
        self.kernel = _pair(kernel_size, "kernel_size", self.kind)
        self.stride = self.kernel if stride is None else _pair(stride, "stride", self.kind)
        self.padding = Padding.of(padding, self.kind)

    def infer_shape(self, shapes):
        n, c, h, w = _rank4(self, shapes[0])
        pads = self.padding.resolve((h, w), self.kernel, self.stride, (1, 1), self.kind)
        oh = (h + pads[0] + pads[1] - self.kernel[0]) // self.stride[0] + 1
        ow = (w + pads[2] + pads[3] - self.kernel[1]) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"output would be {oh}x{ow} for input {h}x{w}")
        self.resolved_padding = pads
        return (n, c, oh, ow)


class PoolingMaxNode(_PoolingNode):
    """Max pooling (MPSCNNPoolingMaxNode); its gradient uses the forward's argmax state."""

    def emit_forward(self, c):
        c.emit_max_pool(self)

    def emit_gradient(self, c, g):
        c.emit_max_pool_gradient(self, g)


class PoolingAverageNode(_PoolingNode):
    """Average pooling (MPSCNNPoolingAverageNode)."""

    def __init__(self, source, kernel_size=2, stride=None, padding: PaddingSpec = "valid",
                 count_include_pad: bool = True, label: str | None = None):
        super().__init__(source, kernel_size, stride, padding, label)
        self.count_include_pad = bool(count_include_pad)

    def emit_forward(self, c):
        c.emit_avg_pool(self)

    def emit_gradient(self, c, g):
        c.emit_avg_pool_gradient(self, g)


class NeuronNode(FilterNode):
    """Elementwise activation ``f(x)`` (see :mod:`metalnn.ops.neuron` for the table)."""

    neuron_type = "none"

    def __init__(self, source: ImageNode, a: float | None = None, b: float | None = None,
                 label: str | None = None):
        super().__init__([source], label)
        self.a, self.b = a, b

    def emit_forward(self, c):
        c.emit_neuron(self)

    def emit_gradient(self, c, g):
        c.emit_neuron_gradient(self, g)


def _neuron_class(name: str, neuron_type: str, doc: str) -> type:
    return type(name, (NeuronNode,), {"neuron_type": neuron_type, "__doc__": doc})


NeuronReLUNode = _neuron_class("NeuronReLUNode", "relu", "ReLU: x if x >= 0 else a*x (a=0).")
NeuronLeakyReLUNode = _neuron_class("NeuronLeakyReLUNode", "leaky_relu", "Leaky ReLU (a=0.01).")
NeuronSigmoidNode = _neuron_class("NeuronSigmoidNode", "sigmoid", "1 / (1 + exp(-x)).")
NeuronHardSigmoidNode = _neuron_class("NeuronHardSigmoidNode", "hard_sigmoid", "clamp(a*x + b, 0, 1).")
NeuronTanHNode = _neuron_class("NeuronTanHNode", "tanh", "a * tanh(b*x).")
NeuronLinearNode = _neuron_class("NeuronLinearNode", "linear", "a*x + b.")
NeuronAbsoluteNode = _neuron_class("NeuronAbsoluteNode", "absolute", "|x|.")
NeuronSoftPlusNode = _neuron_class("NeuronSoftPlusNode", "softplus", "a * log(1 + exp(b*x)).")
NeuronELUNode = _neuron_class("NeuronELUNode", "elu", "x if x >= 0 else a*(exp(x) - 1).")
NeuronReLUNNode = _neuron_class("NeuronReLUNNode", "relun", "min(x if x >= 0 else a*x, b).")
NeuronGeLUNode = _neuron_class("NeuronGeLUNode", "gelu", "x * Phi(x).")
NeuronSoftSignNode = _neuron_class("NeuronSoftSignNode", "softsign", "x / (1 + |x|).")
NeuronSiLUNode = _neuron_class("NeuronSiLUNode", "silu", "x * sigmoid(x).")
NeuronMishNode = _neuron_class("NeuronMishNode", "mish", "x * tanh(log(1 + exp(x))).")
NeuronSELUNode = _neuron_class("NeuronSELUNode", "selu",
                               "b * (x if x >= 0 else a*(exp(x) - 1)) (a=1.6732632, b=1.0507010).")


class DropoutNode(FilterNode):
    """Dropout (MPSCNNDropoutNode): ``y = x * mask / keep_probability`` in training mode,
    the identity in inference mode. Each batch draws a new mask from ``seed``; the mask is
    the state handed to the gradient."""

    def __init__(self, source: ImageNode, keep_probability: float = 0.5, seed: int = 0,
                 label: str | None = None):
        super().__init__([source], label)
        if not 0.0 < keep_probability <= 1.0:
            raise ValueError(f"[{self.kind}] keep_probability must be in (0, 1], got {keep_probability}")
        self.keep_probability = float(keep_probability)
        self.seed = int(seed)

    def emit_forward(self, c):
        c.emit_dropout(self)

    def emit_gradient(self, c, g):
        c.emit_dropout_gradient(self, g)


class SoftmaxNode(FilterNode):
    """Softmax over feature channels (MPSCNNSoftMaxNode)."""

    log = False

    def emit_forward(self, c):
        c.emit_softmax(self)

    def emit_gradient(self, c, g):
        c.emit_softmax_gradient(self, g)


class LogSoftmaxNode(SoftmaxNode):
    """Log-softmax over feature channels (MPSCNNLogSoftMaxNode)."""

    log = True


class AdditionNode(FilterNode):
    """a + b (MPSNNAdditionNode), broadcasting along dimensions where one source has size 1
    (see :mod:`metalnn.graph.nodes_arithmetic`). The graph also inserts one where an image
    feeds several consumers, to sum their gradients."""

    op = "add"

    def __init__(self, a: ImageNode, b: ImageNode, label: str | None = None):
        super().__init__([a, b], label)

    def infer_shape(self, shapes):
        from .nodes_arithmetic import broadcast_shape

        return broadcast_shape(self.kind, shapes[0], shapes[1])

    def emit_forward(self, c):
        from .nodes_arithmetic import emit_forward

        emit_forward(self, c, self.op)

    def emit_gradient(self, c, g):
        from .nodes_arithmetic import emit_gradient

        emit_gradient(self, c, g, self.op)


class SoftmaxCrossEntropyLossNode(FilterNode):
    """Softmax cross-entropy loss (MPSCNNLossNode with MPSCNNLossTypeSoftMaxCrossEntropy).

    As in MPS, ``result`` is the gradient of the loss with respect to the logits (the
    source), so a training graph starts from it; the loss value is on the batch handle.
    Labels (class indices or probabilities) and optional per-sample weights are fed
    to ``encode_batch`` through ``self.labels`` and ``self.weights``.
    """

    def __init__(self, source: ImageNode, reduction: str = "mean", label_smoothing: float = 0.0,
                 label: str | None = None):
        super().__init__([source], label)
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(f"[{self.kind}] reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"[{self.kind}] label_smoothing must be in [0, 1], got {label_smoothing}")
        self.reduction, self.label_smoothing = reduction, float(label_smoothing)
        self.labels = ImageNode(f"{self.label}.labels")
        self.weights = ImageNode(f"{self.label}.weights")

    def gradient_filters(self, source):
        raise TypeError(f"[{self.kind}] the loss node's result already is the gradient of the loss; "
                        "start the training graph from loss.result")

    def emit_forward(self, c):
        c.emit_softmax_cross_entropy(self)


def _rank4(node: FilterNode, shape: tuple) -> tuple:
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D (N, C, H, W) input, got shape {shape}")
    return shape


def _ds_label(ds) -> str | None:
    try:
        return ds.label()
    except Exception:  # noqa: BLE001 - a label is optional at this point
        return None
