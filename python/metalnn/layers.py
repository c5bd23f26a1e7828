"""A layer-level API for people who think in layers (Keras / ``torch.nn.Sequential`` style).

::

    import metalnn as mnn
    from metalnn.layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential

    model = Sequential([
        Conv2d(1, 32, 5), ReLU(), MaxPool2d(2),
        Conv2d(32, 64, 5), ReLU(), MaxPool2d(2),
        Flatten(), Linear(3136, 1024), ReLU(), Dropout(0.5),
        Linear(1024, 10),
    ], input_shape=(1, 28, 28))
    model.compile(mnn.Adam(1e-3), "softmax_cross_entropy")
    history = model.fit(x, y, epochs=2, batch_size=64, validation_data=(xv, yv))
    print(model.evaluate(xt, yt)); labels = model.predict(xt).argmax(1)

A :class:`Sequential` builds exactly the nodes the graph API would (one
``ConvolutionNode`` per ``Conv2d``, one ``FullyConnectedNode`` per ``Linear``, one neuron node
per activation, ...), each trainable layer holding a
:class:`~metalnn.graph.data_source.ConvolutionWeights` data source. Training runs
``Graph.training(loss)``; prediction runs the inference graph ``Graph(logits)``; both share
the same weight arrays.

Layer ``k`` among the trainable ones (counting from 1) draws its initial weights from
``seed + k`` unless it is given its own ``seed`` -- the convention of
:func:`metalnn.examples.digit_graph.digit_network`, so the two build identical networks.
``Flatten`` adds no node: a fully connected layer reads an (N, C, H, W) image as (N, C*H*W)
already (its weights are then ``(O, C, H, W)``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import graph as g
from .graph.data_source import ConvolutionWeights
from .graph.optimizers import SGD, Adam, Optimizer, RMSProp
from .graph.padding import PaddingSpec

__all__ = [
    "Layer", "Conv2d", "Linear", "Dense", "MaxPool2d", "AvgPool2d", "Activation", "ReLU", "LeakyReLU", "Sigmoid",
    "Tanh", "ELU", "GELU", "SiLU", "Softplus", "Mish", "SELU", "Dropout", "Flatten", "Softmax", "LogSoftmax",
    "Sequential",
]

_LOSSES = ("softmax_cross_entropy", "cross_entropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
_OPTIMIZERS: dict[str, Callable[[], Optimizer]] = {"adam": Adam, "sgd": SGD, "rmsprop": RMSProp}


def _neuron_classes() -> dict[str, type]:
    """neuron type name -> NeuronNode subclass (relu -> NeuronReLUNode, ...)."""
    out = {}
    for name in dir(g):
        cls = getattr(g, name)
        if isinstance(cls, type) and issubclass(cls, g.NeuronNode) and cls is not g.NeuronNode:
            out[cls.neuron_type] = cls
    return out


class _Context:
    """What layers need while a Sequential builds its nodes."""

    def __init__(self, seed: int, optimizer: Optimizer | None):
        self.seed, self.optimizer = seed, optimizer
        self.trainable_index = 0
        self.flattened = False
        self.counters: dict[str, int] = {}

    def name(self, layer: Layer) -> str:
        if layer.name:
            return layer.name
        k = self.counters[layer.prefix] = self.counters.get(layer.prefix, 0) + 1
        return f"{layer.prefix}{k}"

    def next_seed(self, own: int | None) -> int:
        self.trainable_index += 1
        return own if own is not None else self.seed + self.trainable_index


class Layer:
    """Base of the layers: ``build`` appends this layer's node(s) after ``source``."""

    prefix = "layer"

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"[{type(self).__name__}] name must be a non-empty str or None, got {name!r}")
        self.name = name
        self.nodes: list[g.FilterNode] = []

    def build(self, source: g.ImageNode, shape: tuple, ctx: _Context) -> tuple[g.ImageNode, tuple]:
        raise NotImplementedError  # pragma: no cover

    def _add(self, node: g.FilterNode, shape: tuple) -> tuple[g.ImageNode, tuple]:
        self.nodes.append(node)
        try:
            out = tuple(node.infer_shape([shape]))
        except (ValueError, TypeError) as e:
            raise ValueError(f"[{type(self).__name__}] layer '{node.label}' on input {shape[1:]}: {e}") from None
        return node.result, out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if self.name else f"{type(self).__name__}()"


class _Trainable(Layer):
    def __init__(self, activation: str | None, bias: bool, weights_init: str, seed: int | None, name: str | None):
        super().__init__(name)
        if activation is not None and activation not in _neuron_classes():
            raise ValueError(f"[{type(self).__name__}] activation: unknown neuron type {activation!r} "
                             f"(expected one of {sorted(_neuron_classes())})")
        self.activation, self.bias, self.weights_init, self.seed = activation, bias, weights_init, seed
        self.data_source: ConvolutionWeights | None = None

    def _activation(self, image: g.ImageNode, shape: tuple, label: str) -> tuple[g.ImageNode, tuple]:
        if self.activation is None:
            return image, shape
        node = _neuron_classes()[self.activation](image, label=f"{label}.{self.activation}")
        return self._add(node, shape)


class Conv2d(_Trainable):
    """2-D convolution (``ConvolutionNode``), weights (out, in/groups, kH, kW) He-initialised.

    ``padding``: "same" (default), "valid", numbers or a callable, as the node's.
    ``in_channels=None`` takes the channels of the input. ``activation``: a neuron type
    (e.g. "relu") appended as its own neuron node (the graph fuses it into the convolution).
    """

    prefix = "conv"

    def __init__(self, in_channels: int | None, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, padding: PaddingSpec = "same",
                 dilation: int | tuple[int, int] = 1, groups: int = 1, *, bias: bool = True,
                 activation: str | None = None, weights_init: str = "he", seed: int | None = None,
                 name: str | None = None):
        super().__init__(activation, bias, weights_init, seed, name)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.groups = dilation, groups

    def build(self, source, shape, ctx):
        if len(shape) != 4 or ctx.flattened:
            raise ValueError(f"[Conv2d] expects images (C, H, W), got input {shape[1:]}"
                             + (" after Flatten" if ctx.flattened else ""))
        cin = shape[1] if self.in_channels is None else self.in_channels
        label = ctx.name(self)
        self.data_source = ConvolutionWeights(cin, self.out_channels, self.kernel_size, stride=self.stride,
                                              dilation=self.dilation, groups=self.groups, bias=self.bias,
                                              weights_init=self.weights_init, optimizer=ctx.optimizer,
                                              seed=ctx.next_seed(self.seed), label=label)
        out, shape = self._add(g.ConvolutionNode(source, self.data_source, padding=self.padding), shape)
        return self._activation(out, shape, label)


class Linear(_Trainable):
    """Fully connected layer (``FullyConnectedNode``): ``y = x W^T + b`` over the flattened input.

    ``in_features=None`` takes the input's features. On an (N, C, H, W) input the weights are
    (out, C, H, W) -- the same numbers as (out, C*H*W) in NCHW flattening order.
    """

    prefix = "fc"

    def __init__(self, in_features: int | None, out_features: int, *, bias: bool = True,
                 activation: str | None = None, weights_init: str = "he", seed: int | None = None,
                 name: str | None = None):
        super().__init__(activation, bias, weights_init, seed, name)
        self.in_features, self.out_features = in_features, out_features

    def build(self, source, shape, ctx):
        features = math.prod(shape[1:])
        if self.in_features is not None and self.in_features != features:
            raise ValueError(f"[{type(self).__name__}] in_features={self.in_features} but the input {shape[1:]} "
                             f"has {features} features")
        cin, kernel = (shape[1], tuple(shape[2:])) if len(shape) == 4 else (features, 1)
        label = ctx.name(self)
        self.data_source = ConvolutionWeights(cin, self.out_features, kernel, bias=self.bias,
                                              weights_init=self.weights_init, optimizer=ctx.optimizer,
                                              seed=ctx.next_seed(self.seed), label=label)
        ctx.flattened = False
        out, shape = self._add(g.FullyConnectedNode(source, self.data_source), shape)
        return self._activation(out, shape, label)


class Dense(Linear):
    """Keras spelling of :class:`Linear`: ``Dense(units, activation=None)``, input features inferred."""

    def __init__(self, units: int, activation: str | None = None, *, in_features: int | None = None,
                 bias: bool = True, weights_init: str = "he", seed: int | None = None, name: str | None = None):
        super().__init__(in_features, units, bias=bias, activation=activation, weights_init=weights_init, seed=seed,
                         name=name)


class _Pool(Layer):
    prefix = "pool"
    node_class: type = g.PoolingMaxNode

    def __init__(self, kernel_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
                 padding: PaddingSpec = "valid", name: str | None = None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def _node(self, source, label):
        return self.node_class(source, self.kernel_size, self.stride, self.padding, label=label)

    def build(self, source, shape, ctx):
        if len(shape) != 4 or ctx.flattened:
            raise ValueError(f"[{type(self).__name__}] expects images (C, H, W), got input {shape[1:]}")
        return self._add(self._node(source, ctx.name(self)), shape)


class MaxPool2d(_Pool):
    """Max pooling (``PoolingMaxNode``); ``stride`` defaults to ``kernel_size``."""

    node_class = g.PoolingMaxNode


class AvgPool2d(_Pool):
    """Average pooling (``PoolingAverageNode``); ``stride`` defaults to ``kernel_size``."""

    node_class = g.PoolingAverageNode

    def __init__(self, kernel_size=2, stride=None, padding: PaddingSpec = "valid", count_include_pad: bool = True,
                 name: str | None = None):
        super().__init__(kernel_size, stride, padding, name)
        self.count_include_pad = count_include_pad

    def _node(self, source, label):
        return g.PoolingAverageNode(source, self.kernel_size, self.stride, self.padding, self.count_include_pad,
                                    label=label)


class Activation(Layer):
    """An elementwise neuron by type name (see :mod:`metalnn.ops.neuron`), with MPS's a and b."""

    def __init__(self, kind: str, a: float | None = None, b: float | None = None, name: str | None = None):
        super().__init__(name)
        if kind not in _neuron_classes():
            raise ValueError(f"[Activation] unknown neuron type {kind!r} (expected one of {sorted(_neuron_classes())})")
        self.kind, self.a, self.b = kind, a, b

    @property
    def prefix(self) -> str:  # type: ignore[override]
        return self.kind

    def build(self, source, shape, ctx):
        return self._add(_neuron_classes()[self.kind](source, self.a, self.b, label=ctx.name(self)), shape)


class ReLU(Activation):
    """``max(x, 0)``."""

    def __init__(self, name: str | None = None):
        super().__init__("relu", name=name)


class LeakyReLU(Activation):
    """``x if x >= 0 else alpha*x``."""

    def __init__(self, alpha: float = 0.01, name: str | None = None):
        super().__init__("leaky_relu", alpha, name=name)


class Sigmoid(Activation):
    """``1 / (1 + exp(-x))``."""

    def __init__(self, name: str | None = None):
        super().__init__("sigmoid", name=name)


class Tanh(Activation):
    """``tanh(x)``."""

    def __init__(self, name: str | None = None):
        super().__init__("tanh", name=name)


class ELU(Activation):
    """``x if x >= 0 else alpha*(exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0, name: str | None = None):
        super().__init__("elu", alpha, name=name)


class GELU(Activation):
    """``x * Phi(x)``."""

    def __init__(self, name: str | None = None):
        super().__init__("gelu", name=name)


class SiLU(Activation):
    """``x * sigmoid(x)``."""

    def __init__(self, name: str | None = None):
        super().__init__("silu", name=name)


class Softplus(Activation):
    """``log(1 + exp(x))``."""

    def __init__(self, name: str | None = None):
        super().__init__("softplus", name=name)


class Mish(Activation):
    """``x * tanh(softplus(x))``."""

    def __init__(self, name: str | None = None):
        super().__init__("mish", name=name)


class SELU(Activation):
    """Scaled ELU with the self-normalising constants."""

    def __init__(self, name: str | None = None):
        super().__init__("selu", name=name)


class Dropout(Layer):
    """Dropout with drop probability ``p`` (``DropoutNode`` with ``keep_probability = 1 - p``);
    the identity in inference."""

    prefix = "dropout"

    def __init__(self, p: float = 0.5, seed: int = 0, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"[Dropout] p must be in [0, 1), got {p}")
        self.p, self.seed = float(p), int(seed)

    def build(self, source, shape, ctx):
        return self._add(g.DropoutNode(source, 1.0 - self.p, seed=self.seed, label=ctx.name(self)), shape)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) for the next :class:`Linear`. Adds no node: a fully
    connected node reads an image as its flattened features already."""

    prefix = "flatten"

    def build(self, source, shape, ctx):
        ctx.flattened = True
        return source, shape


class Softmax(Layer):
    """Softmax over the feature channels (``SoftmaxNode``). As the last layer of a model
    trained with softmax cross-entropy, the loss reads its input (the logits)."""

    prefix = "softmax"
    node_class: type = g.SoftmaxNode

    def build(self, source, shape, ctx):
        if ctx.flattened and len(shape) == 4 and shape[2:] != (1, 1):
            raise ValueError(f"[{type(self).__name__}] needs a Linear layer after Flatten (softmax runs over "
                             "channels of an image)")
        return self._add(self.node_class([source], label=ctx.name(self)), shape)


class LogSoftmax(Softmax):
    """Log-softmax over the feature channels (``LogSoftmaxNode``)."""

    prefix = "log_softmax"
    node_class = g.LogSoftmaxNode


# --------------------------------------------------------------------------------------------


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> int:
    """Number of samples whose arg-max class matches the label (index or probabilities)."""
    pred = logits.reshape(len(logits), logits.shape[1], -1).argmax(1)
    target = labels.argmax(1) if labels.ndim > 1 and labels.shape[1:] == logits.shape[1:] else labels
    return int(np.sum(pred.reshape(-1) == np.asarray(target).reshape(-1)))


class Sequential:
    """A stack of layers with ``compile``, ``fit``, ``evaluate`` and ``predict``.

    ``input_shape``: one sample's shape, e.g. ``(1, 28, 28)`` (else taken from the first
    batch). ``seed``: base of the weight seeds (layer k: ``seed + k``). ``device``: the
    graphs' device (default: the best present).
    """

    def __init__(self, layers: Iterable[Layer] = (), input_shape: Sequence[int] | None = None, *, seed: int = 0,
                 device: str | None = None, name: str = "image"):
        self.layers: list[Layer] = []
        for layer in layers:
            self.add(layer)
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.seed, self.device, self._source_name = int(seed), device, name
        self.optimizer: Optimizer | None = None
        self.loss: Any = None
        self.metrics: tuple[str, ...] = ()
        self._built = False
        self._graphs: dict[str, g.Graph] = {}

    def add(self, layer: Layer) -> Sequential:
        if not isinstance(layer, Layer):
            raise TypeError(f"[Sequential] expected a Layer, got {type(layer).__name__}")
        if getattr(self, "_built", False):
            raise ValueError("[Sequential] the model is built; add layers before compile/fit/predict")
        self.layers.append(layer)
        return self

    # -- building --------------------------------------------------------------------------
    def compile(self, optimizer: Optimizer | str = "adam", loss: str | Callable = "softmax_cross_entropy",
                metrics: Sequence[str] = ("accuracy",)) -> Sequential:
        """Sets the optimizer (an :class:`~metalnn.Adam`/``SGD``/``RMSProp`` or its name) every
        trainable layer uses, and the loss: "softmax_cross_entropy" (aliases: "cross_entropy",
        "sparse_categorical_crossentropy", "categorical_crossentropy") or a callable
        ``loss(logits_image) -> loss node``. ``metrics``: "accuracy" or nothing."""
        if isinstance(optimizer, str):
            if optimizer.lower() not in _OPTIMIZERS:
                raise ValueError(f"[Sequential] optimizer: unknown name {optimizer!r} (expected one of "
                                 f"{sorted(_OPTIMIZERS)} or an optimizer object)")
            optimizer = _OPTIMIZERS[optimizer.lower()]()
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"[Sequential] optimizer must be an Optimizer or a name, got {type(optimizer).__name__}")
        if isinstance(loss, str) and loss not in _LOSSES:
            raise ValueError(f"[Sequential] loss: unknown name {loss!r} (expected one of {list(_LOSSES)} or a "
                             "callable)")
        if not isinstance(loss, str) and not callable(loss):
            raise TypeError(f"[Sequential] loss must be a name or a callable, got {type(loss).__name__}")
        unknown = [m for m in metrics if m != "accuracy"]
        if unknown:
            raise ValueError(f"[Sequential] metrics: unknown {unknown} (only 'accuracy')")
        self.optimizer, self.loss, self.metrics = optimizer, loss, tuple(metrics)
        for layer in self.layers:
            if isinstance(layer, _Trainable) and layer.data_source is not None:
                layer.data_source.optimizer = optimizer
        self._graphs.pop("training", None)
        return self

    def build(self, input_shape: Sequence[int] | None = None) -> Sequential:
        """Creates the nodes for one sample of ``input_shape`` (C, H, W) or (F,)."""
        if self._built:
            return self
        if input_shape is not None:
            self.input_shape = tuple(int(v) for v in input_shape)
        if self.input_shape is None:
            raise ValueError("[Sequential] input_shape is unknown: pass it to Sequential(...) or build(...)")
        if not self.layers:
            raise ValueError("[Sequential] the model has no layers")
        ctx = _Context(self.seed, self.optimizer)
        self.source = g.ImageNode(self._source_name)
        image, shape = self.source, (1,) + self.input_shape
        self._outputs: list[g.ImageNode] = []
        for layer in self.layers:
            layer.nodes = []
            image, shape = layer.build(image, shape, ctx)
            self._outputs.append(image)
        self.output = image
        self.output_shape = shape[1:]
        # The loss reads the logits: the input of a final softmax, else the last output.
        last = self.layers[-1]
        self.logits = self._outputs[-2] if isinstance(last, Softmax) and len(self.layers) > 1 else image
        self._built = True
        return self

    @property
    def nodes(self) -> list[g.FilterNode]:
        """The filter nodes, in layer order (the model is built first when its input shape is known)."""
        if not self._built and self.input_shape is not None:
            self.build()
        return [n for layer in self.layers for n in layer.nodes]

    def _loss_node(self):
        if self.loss is None or self.optimizer is None:
            raise ValueError("[Sequential] call compile(optimizer, loss) before fit/evaluate")
        if getattr(self, "_loss", None) is None:
            if isinstance(self.loss, str):
                self._loss = g.SoftmaxCrossEntropyLossNode(self.logits, label="loss")
            else:
                self._loss = self.loss(self.logits)
                if isinstance(self._loss, g.ImageNode):
                    self._loss = self._loss.producer
            self.logits.export_from_graph = True  # read by accuracy in fit/evaluate
        return self._loss

    def _graph(self, which: str) -> g.Graph:
        if which not in self._graphs:
            if which == "inference":
                self._graphs[which] = g.Graph(self.output, device=self.device)
            elif which == "evaluation":
                self._graphs[which] = g.Graph(self._loss_node().result, result_needed=False, device=self.device)
            else:
                self._graphs[which] = g.Graph.training(self._loss_node(), device=self.device)
        return self._graphs[which]

    @property
    def graph(self) -> g.Graph:
        """The inference graph (input -> last layer)."""
        self.build()
        return self._graph("inference")

    @property
    def training_graph(self) -> g.Graph:
        """The training graph derived from the loss (after :meth:`compile`)."""
        self.build()
        return self._graph("training")

    # -- running ---------------------------------------------------------------------------
    def _prepare(self, x) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32) if not isinstance(x, np.ndarray)
                                 or x.dtype not in (np.float32, np.float16) else x)
        if x.ndim < 2:
            raise ValueError(f"[Sequential] expected a batch (N, ...) of samples, got shape {x.shape}")
        if not self._built:
            self.build(x.shape[1:] if self.input_shape is None else None)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"[Sequential] samples have shape {x.shape[1:]}, the model expects {self.input_shape}")
        return x

    @staticmethod
    def _labels(y) -> np.ndarray:
        y = np.asarray(y)
        return np.ascontiguousarray(y.astype(np.int32) if y.dtype.kind in "iu" else y.astype(np.float32))

    def _batches(self, n: int, batch_size: int, order: np.ndarray | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"[Sequential] batch_size must be an int >= 1, got {batch_size!r}")
        idx = np.arange(n) if order is None else order
        for i in range(0, n, batch_size):
            yield idx[i:i + batch_size]

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data: tuple | None = None,
            shuffle: bool = True, progress: bool = True, seed: int = 0) -> dict[str, list[float]]:
        """Trains for ``epochs`` passes over ``(x, y)`` in batches (double-buffered: the next
        batch is queued while one runs). Returns the history: per-epoch mean ``loss`` (and
        ``accuracy``), and ``val_loss`` / ``val_accuracy`` when ``validation_data=(xv, yv)``.
        ``progress`` shows a tqdm bar per epoch."""
        from tqdm.auto import tqdm

        x, y = self._prepare(x), self._labels(y)
        if len(x) != len(y):
            raise ValueError(f"[Sequential] x has {len(x)} samples but y has {len(y)}")
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"[Sequential] epochs must be an int >= 0, got {epochs!r}")
        graph = self._graph("training")
        rng = np.random.default_rng(seed)
        history: dict[str, list[float]] = {"loss": []}
        accuracy = "accuracy" in self.metrics
        if accuracy:
            history["accuracy"] = []
        if validation_data is not None:
            history["val_loss"] = []
            if accuracy:
                history["val_accuracy"] = []
        for epoch in range(epochs):
            order = rng.permutation(len(x)) if shuffle else None
            total = correct = seen = 0.0
            pending: deque = deque()
            bar = tqdm(total=len(x), desc=f"epoch {epoch + 1}/{epochs}", unit="sample", disable=not progress,
                       leave=True)

            def finish(item, bar=bar):
                nonlocal total, correct, seen
                handle, yb = item
                loss = handle.loss
                total += float(loss) * len(yb)
                seen += len(yb)
                if accuracy:
                    correct += _accuracy(handle.output(self.logits), yb)
                bar.update(len(yb))
                bar.set_postfix(loss=f"{total / seen:.4f}")

            try:
                for idx in self._batches(len(x), batch_size, order):
                    xb, yb = np.ascontiguousarray(x[idx]), y[idx]
                    pending.append((graph.encode_batch(xb, yb), yb))
                    if len(pending) > graph.max_in_flight:
                        finish(pending.popleft())
                while pending:
                    finish(pending.popleft())
                history["loss"].append(total / max(seen, 1))
                if accuracy:
                    history["accuracy"].append(correct / max(seen, 1))
                if validation_data is not None:
                    self._sync()
                    xv, yv = validation_data
                    val = self.evaluate(xv, yv, batch_size=batch_size)
                    history["val_loss"].append(val["loss"])
                    if accuracy:
                        history["val_accuracy"].append(val["accuracy"])
                    bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", val_loss=f"{val['loss']:.4f}")
            finally:
                graph.synchronize()
                bar.close()
        self._sync()
        return history

    def _sync(self) -> None:
        """Off the CPU, the training graph holds the trained weights on the device: copy
        them into the data sources and rebuild the other graphs from them."""
        train = self._graphs.get("training")
        if train is None or train.device.type == "cpu":
            return
        from .interop import _host

        train.synchronize()
        for node, (w, b) in train._params.items():
            ds: Any = getattr(node, "data_source", None)
            np.copyto(ds.weight_array, _host(w.value).reshape(ds.weight_array.shape))
            if b is not None:
                np.copyto(ds.bias_array, _host(b.value).reshape(ds.bias_array.shape))
        self._graphs.pop("inference", None)
        self._graphs.pop("evaluation", None)

    def evaluate(self, x, y, batch_size: int = 256) -> dict[str, float]:
        """Mean loss (and accuracy) over ``(x, y)`` in inference mode (dropout off)."""
        x, y = self._prepare(x), self._labels(y)
        if len(x) != len(y):
            raise ValueError(f"[Sequential] x has {len(x)} samples but y has {len(y)}")
        graph = self._graph("evaluation")
        total = correct = 0.0
        for idx in self._batches(len(x), batch_size):
            h = graph.run(x[idx[0]:idx[-1] + 1], y[idx[0]:idx[-1] + 1])
            total += float(h.loss) * len(idx)
            if "accuracy" in self.metrics:
                correct += _accuracy(h.output(self.logits), y[idx[0]:idx[-1] + 1])
        out = {"loss": total / max(len(x), 1)}
        if "accuracy" in self.metrics:
            out["accuracy"] = correct / max(len(x), 1)
        return out

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """The last layer's output for every sample of ``x``."""
        x = self._prepare(x)
        graph = self._graph("inference")
        if isinstance(batch_size, int) and 0 < len(x) <= batch_size:  # one batch: run here, no hand-off
            return np.array(graph.run(x).result, copy=True)
        out: list[np.ndarray] = []
        pending: deque = deque()
        for idx in self._batches(len(x), batch_size):
            pending.append(graph.encode_batch(x[idx[0]:idx[-1] + 1]))
            if len(pending) > graph.max_in_flight:
                out.append(np.array(pending.popleft().result, copy=True))
        out += [np.array(h.result, copy=True) for h in pending]
        return np.concatenate(out) if out else np.zeros((0,) + tuple(self.output_shape), np.float32)

    # -- seeing and moving -----------------------------------------------------------------
    def summary(self) -> str:
        """The inference graph's summary table (see :meth:`metalnn.Graph.summary`)."""
        self.build()
        return self.graph.summary(input_shape=(1,) + tuple(self.input_shape or ()))

    def to_onnx(self, path=None, **kw):
        """Exports the inference graph (see :func:`metalnn.export_onnx`)."""
        from .onnx_export import export_onnx

        self.build()
        kw.setdefault("input_shape", (1,) + tuple(self.input_shape or ()))
        return export_onnx(self.graph, path, **kw)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
