"""Normalization filter nodes (MPSCNNBatchNormalizationNode, MPSCNNInstanceNormalizationNode,
group / layer normalization, MPSCNNCrossChannelNormalizationNode).

The affine layers take a data source (:mod:`metalnn.graph.data_source_normalization`); their
gamma / beta train like a convolution's weights / biases (the source's optimizer or its own
``update``). A batch normalization node normalises with the batch's statistics in a training
graph and moves the running statistics by ``momentum`` after each batch; in an inference
graph it normalises with the running statistics. Sources are ``(N, C)``, ``(N, C, L)`` or
``(N, C, H, W)``; see :mod:`metalnn.ops.normalization` for the math.
"""

from __future__ import annotations

import math
import weakref

from .. import _core
from .nodes import FilterNode, GradientNode, ImageNode


def _image(kind: str, shape: tuple) -> tuple:
    if not 2 <= len(shape) <= 4:
        raise ValueError(f"expected an (N, C), (N, C, L) or (N, C, H, W) input, got shape {shape}")
    return shape


def _label_of(ds) -> str | None:
    try:
        label = ds.label()
    except Exception:  # noqa: BLE001 - a label is optional at this point
        return None
    return label if isinstance(label, str) and label else None


class _AffineNormalizationNode(FilterNode):
    """Normalization with per-channel gamma / beta from a data source."""

    trainable = True
    _batch = False  # reads mean() / variance() too

    def __init__(self, source: ImageNode, data_source, label: str | None = None):
        super().__init__([source], label or _label_of(data_source))
        self.data_source = data_source
        self._channels: int | None = None
        self._epsilon = 1e-5
        # Per graph: the running statistics' parameters (batch norm).
        self._running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._state = -1

    # -- parameters (called by Graph._parameters, once per graph) -------------------------
    def bind_parameters(self, graph) -> tuple:
        """Reads the data source and binds gamma / beta (and the running statistics) as
        parameters of ``graph``; returns (gamma, beta) as a convolution returns (weights, biases)."""
        from .data_source_normalization import read_normalization_parameters
        from .graph import _overrides_update

        try:
            p = read_normalization_parameters(self.data_source, batch=self._batch)
        except (TypeError, ValueError, RuntimeError) as e:
            raise type(e)(f"[Graph] node '{self.label}': {e}") from None
        if not graph._on_host and _overrides_update(self.data_source):
            raise ValueError(f"[Graph] node '{self.label}': a Python update() runs only in cpu graphs; "
                             "give the data source an optimizer instead")
        self._channels, self._epsilon = p.channels, p.epsilon

        def param(name, array):
            q = _core.graph.Parameter(f"{p.label}.{name}")
            q.bind(graph._bindable(array))
            return q

        if self._batch:
            self._running[graph] = (param("mean", p.mean), param("variance", p.variance))
        return param("gamma", p.gamma), param("beta", p.beta)

    def running_statistics(self, graph) -> tuple:
        """(mean, variance) as ``graph`` holds them (numpy views on a cpu graph)."""
        graph._parameters(self)
        mean, var = self._running[graph]
        return mean.value, var.value

    def infer_shape(self, shapes):
        shape = _image(self.kind, shapes[0])
        if self._channels is not None and shape[1] != self._channels:
            raise ValueError(f"input has {shape[1]} channels but the data source has {self._channels}")
        return shape

    # -- emission --------------------------------------------------------------------------
    def _forward_step(self, c, x: int, y: int, s: int, gamma, beta) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward_step(self, c, g, dy, x, gamma, dx, dgamma, dbeta) -> None:  # pragma: no cover
        raise NotImplementedError

    def emit_forward(self, c) -> None:
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        gamma, beta = c.graph._parameters(self)
        # The gradient reads the statistics the forward normalised with.
        self._state = c.new_state() if self in c.graph._differentiated else -1
        self._forward_step(c, x, y, self._state, gamma, beta)

    def emit_gradient(self, c, g: GradientNode) -> None:
        gamma, _ = c.graph._parameters(self)
        trains = c.graph._trains(self)
        needed = c.needed(g.result)
        if not trains and not needed:
            return
        dy, x = c.slot(g.sources[0]), c.slot(self.sources[0])
        channels = (c.shape(self.sources[0])[1],)
        dx = c.slot(g.result) if needed else -1
        dgamma = c.new_slot(channels) if trains else -1
        dbeta = c.new_slot(channels) if trains else -1
        self._backward_step(c, g, dy, x, gamma, dx, dgamma, dbeta)
        if trains:
            c.updates.append((self, dgamma, dbeta))

    @staticmethod
    def _outputs(*slots) -> list:
        return [s for s in slots if s >= 0]


class BatchNormalizationNode(_AffineNormalizationNode):
    """Batch normalization (MPSCNNBatchNormalizationNode).

    Training graphs normalise with the batch's statistics (per channel over N and the
    positions; the gradient takes them as a state) and update the running statistics by
    ``running = (1 - momentum) * running + momentum * batch`` (unbiased batch variance);
    inference graphs normalise with the running statistics. ``data_source`` follows
    :class:`~metalnn.graph.data_source_normalization.BatchNormalizationDataSource`.
    """

    _batch = True

    def __init__(self, source: ImageNode, data_source, momentum: float = 0.1, label: str | None = None):
        super().__init__(source, data_source, label)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not math.isfinite(momentum) \
                or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"[{self.kind}] momentum must be a number in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)

    def _forward_step(self, c, x, y, s, gamma, beta):
        mean, var = self._running[c.graph]
        c.emit(self.label, "batch_norm_forward", x, y, s, gamma, beta, mean, var, bool(c.training), self.momentum,
               self._epsilon, inputs=[x], outputs=[y], states_out=self._outputs(s))

    def _backward_step(self, c, g, dy, x, gamma, dx, dgamma, dbeta):
        c.emit(g.label, "batch_norm_backward", dy, x, self._state, gamma, dx, dgamma, dbeta, inputs=[dy, x],
               outputs=self._outputs(dx, dgamma, dbeta), states_in=[self._state])


class GroupNormalizationNode(_AffineNormalizationNode):
    """Group normalization: statistics per sample over groups of ``C / groups`` consecutive
    channels and all positions; per-channel gamma / beta from a
    :class:`~metalnn.graph.data_source_normalization.NormalizationDataSource`."""

    _kind = "group"

    def __init__(self, source: ImageNode, data_source, groups: int = 1, label: str | None = None):
        super().__init__(source, data_source, label)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"[{self.kind}] groups must be an int >= 1, got {groups!r}")
        self.groups = groups

    def _groups(self) -> int:
        """The step's group count: 0 lets the kernel take the input's channels (instance norm)."""
        return self.groups

    def infer_shape(self, shapes):
        shape = super().infer_shape(shapes)
        if self._kind == "group" and shape[1] % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide the input's {shape[1]} channels")
        return shape

    def _forward_step(self, c, x, y, s, gamma, beta):
        c.emit(self.label, "group_norm_forward", x, y, s, gamma, beta, self._groups(), self._epsilon, self._kind,
               inputs=[x], outputs=[y], states_out=self._outputs(s))

    def _backward_step(self, c, g, dy, x, gamma, dx, dgamma, dbeta):
        c.emit(g.label, "group_norm_backward", dy, x, self._state, gamma, dx, dgamma, dbeta, self._kind,
               inputs=[dy, x], outputs=self._outputs(dx, dgamma, dbeta), states_in=[self._state])


class InstanceNormalizationNode(GroupNormalizationNode):
    """Instance normalization (MPSCNNInstanceNormalizationNode): statistics per sample and
    channel over the positions."""

    _kind = "instance"

    def __init__(self, source: ImageNode, data_source, label: str | None = None):
        super().__init__(source, data_source, 1, label)

    def _groups(self) -> int:
        return 0


class LayerNormalizationNode(GroupNormalizationNode):
    """Layer normalization: statistics per sample over (C, H, W); per-channel gamma / beta
    (as ``GroupNorm(1, C)``)."""

    _kind = "layer"

    def __init__(self, source: ImageNode, data_source, label: str | None = None):
        super().__init__(source, data_source, 1, label)


class CrossChannelNormalizationNode(FilterNode):
    """Local response normalization across channels (MPSCNNCrossChannelNormalizationNode):
    ``y = x / (delta + alpha / size * sum_{window} x^2)^beta`` (see
    :func:`metalnn.ops.cross_channel_norm_forward`). Defaults as MPS: size 5, alpha 1e-4,
    beta 0.75, delta 1."""

    def __init__(self, source: ImageNode, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                 delta: float = 1.0, label: str | None = None):
        super().__init__([source], label)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"[{self.kind}] size must be an int >= 1, got {size!r}")
        for name, v in (("alpha", alpha), ("beta", beta), ("delta", delta)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"[{self.kind}] {name} must be a finite number, got {v!r}")
        if alpha < 0 or delta <= 0:
            raise ValueError(f"[{self.kind}] alpha must be >= 0 and delta > 0, got alpha={alpha}, delta={delta}")
        self.size, self.alpha, self.beta, self.delta = size, float(alpha), float(beta), float(delta)

    def infer_shape(self, shapes):
        return _image(self.kind, shapes[0])

    def _args(self) -> tuple:
        return self.size, self.alpha, self.beta, self.delta

    def emit_forward(self, c):
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        c.emit(self.label, "cross_channel_norm_forward", x, y, *self._args(), inputs=[x], outputs=[y])

    def emit_gradient(self, c, g):
        if not c.needed(g.result):
            return
        dy, x, dx = c.slot(g.sources[0]), c.slot(self.sources[0]), c.slot(g.result)
        c.emit(g.label, "cross_channel_norm_backward", dy, x, dx, *self._args(), inputs=[dy, x], outputs=[dx])
