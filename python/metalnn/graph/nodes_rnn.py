"""Recurrent layers in the graph: RNNNode and RNNWeights, its data source.

An :class:`RNNNode` runs stacked (optionally bidirectional) single-gate / LSTM / GRU / MGU
layers (:mod:`metalnn.rnn`, math in :mod:`metalnn.ops.rnn`) over a sequence image of shape
(T, B, I) -- time first, as the RNN kernels take it. Its result is the output sequence
(T, B, D*H) or, with ``output="final"``, the top layer's final hidden states (B, D*H), ready for
a FullyConnectedNode (a classifier reading the whole sequence).

Connecting to image nodes: with ``source_layout="image"`` the node reads an image batch
(N, C, 1, L) -- what a ConvolutionNode with a (1, k) kernel makes of a (N, C_in, 1, L_in) sensor
series, the seed's 1-D convolution -- as the sequence T = L, B = N, I = C, and hands its
gradient back in that layout (a transpose on the CPU; the other devices take (T, B, I) sources
for now). The shape family's ImageToMatrixNode / MatrixToImageNode reshape (N, C, H, W) <->
(N, C*H*W) without moving axes, so they connect an RNNNode with ``output="final"`` (B, D*H) to
image layers, or a (T, B, I) sequence fed as its own source.

:class:`RNNWeights` holds every weight matrix of the layers back to back in one flat array (held
as an ``(N, 1, 1, 1)`` weight without bias, like PReLU's slopes), so the graph binds,
checkpoints and trains it with the data source's ``optimizer`` as any layer's weights;
:meth:`RNNWeights.matrices` gives the matrices as views that follow training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..rnn import RNNDescriptor, RNNMatrixTrainingLayer
from .data_source import ConvolutionWeights
from .nodes import FilterNode, GradientNode, ImageNode
from .optimizers import Optimizer

__all__ = ["RNNNode", "RNNWeights"]


class RNNWeights(ConvolutionWeights):
    """Data source of an :class:`RNNNode`: the layers and their weights as one flat array.

    ``layer`` is an :class:`~metalnn.rnn.RNNMatrixTrainingLayer` or its descriptor(s) (then
    ``bidirectional`` applies). ``weights`` are the matrices in the layer's order (default:
    ``layer.create_weight_matrices(seed)``). The dtype is float32, or float16 when every
    descriptor has ``use_float32_weights=False``.
    """

    def __init__(self, layer: RNNMatrixTrainingLayer | RNNDescriptor | Sequence[RNNDescriptor], *,
                 bidirectional: bool = False, weights: Sequence[np.ndarray] | None = None, seed: int = 0,
                 optimizer: Optimizer | None = None, label: str | None = None):
        owner = "RNNWeights"
        if not isinstance(layer, RNNMatrixTrainingLayer):
            layer = RNNMatrixTrainingLayer(layer, bidirectional)
        flags = {d.use_float32_weights for d in layer.descriptors}
        if len(flags) != 1:
            raise ValueError(f"[{owner}] every descriptor must agree on use_float32_weights (one flat array)")
        dtype = np.float32 if flags.pop() else np.float16
        mats = layer.create_weight_matrices(seed) if weights is None else layer._check_weights(weights)
        flat = np.concatenate([np.asarray(m, dtype=dtype).reshape(-1) for m in mats])
        cells = "_".join(d.cell for d in layer.descriptors)
        super().__init__(1, flat.size, 1, weights_init=flat.reshape(-1, 1), bias=False, optimizer=optimizer,
                         label=label or f"rnn_{cells}_{layer.input_feature_channels}to{layer.output_feature_channels}",
                         dtype=dtype)
        self.layer = layer

    def matrices(self) -> list[np.ndarray]:
        """The weight matrices (layer order) as views of the flat array the graph trains."""
        flat = self.weights().reshape(-1)
        out, k = [], 0
        for s in self.layer.weight_shapes():
            n = int(np.prod(s))
            out.append(flat[k:k + n].reshape(s))
            k += n
        return out

    def __repr__(self) -> str:
        return (f"RNNWeights(layers={self.layer.layers}, bidirectional={self.layer.bidirectional}, "
                f"dtype={self.dtype.name}, label={self.label()!r}, optimizer={self.optimizer!r})")


class RNNNode(FilterNode):
    """Recurrent layers over a (T, B, I) sequence (MPSRNNMatrixTrainingLayer as a graph node).

    ``output="sequence"`` gives (T, B, D*H); ``output="final"`` the top layer's final hidden
    states (B, D*H). Trainable: its gradient node yields the source's gradient and, when the
    data source has an optimizer, the weights' gradient for the graph's update.
    """

    trainable = True

    def __init__(self, source: ImageNode, weights: RNNWeights, output: str = "sequence", label: str | None = None,
                 source_layout: str = "sequence"):
        super().__init__([source], label or weights.label())
        if not isinstance(weights, RNNWeights):
            raise TypeError(f"[{self.kind}] weights must be an RNNWeights data source, got {type(weights).__name__}")
        if output not in ("sequence", "final"):
            raise ValueError(f"[{self.kind}] output must be 'sequence' or 'final', got {output!r}")
        if source_layout not in ("sequence", "image"):
            raise ValueError(f"[{self.kind}] source_layout must be 'sequence' (T, B, I) or 'image' (N, C, 1, L), "
                             f"got {source_layout!r}")
        self.source_layout = source_layout
        self.data_source = weights
        self.output = output
        self._descriptor = None
        self._state = -1

    @property
    def layer(self) -> RNNMatrixTrainingLayer:
        return self.data_source.layer

    def descriptor(self):
        if self._descriptor is None:
            self._descriptor = self.data_source.descriptor()
        return self._descriptor

    def infer_shape(self, shapes):
        x, layer = shapes[0], self.layer
        if self.source_layout == "image":
            if not (len(x) == 3 or (len(x) == 4 and x[2] == 1)):
                raise ValueError(f"expected an image source (N, C, 1, L) or (N, C, L), got shape {x}")
            x = (x[-1], x[0], x[1])
        if len(x) != 3:
            raise ValueError(f"expected a (T, B, I) sequence, got shape {x}")
        if x[2] != layer.input_feature_channels:
            raise ValueError(f"sequence has {x[2]} features but the layer expects {layer.input_feature_channels}")
        if self.output == "final":
            return (x[1], layer.output_feature_channels)
        return (x[0], x[1], layer.output_feature_channels)

    def _args(self) -> tuple:
        return (self.layer.layers, self.layer.bidirectional, self.output == "final", self.source_layout == "image")

    def emit_forward(self, c) -> None:
        w, _ = c.graph._parameters(self)
        x, y = c.slot(self.sources[0]), c.slot(self.result)
        s = self._state = c.new_state() if c.training and self in c.graph._differentiated else -1
        c.emit(self.label, "rnn_forward", x, y, s, w, *self._args(), inputs=[x], outputs=[y],
               states_out=[s] if s >= 0 else [])

    def emit_gradient(self, c, g: GradientNode) -> None:
        w, _ = c.graph._parameters(self)
        dy, x = c.slot(g.sources[0]), c.slot(self.sources[0])
        dw = c.new_slot(w.value.shape) if c.graph._trains(self) else -1
        dx = c.slot(g.result) if c.needed(g.result) else -1
        if dw < 0 and dx < 0:
            return
        outs = [s for s in (dx, dw) if s >= 0]
        c.emit(g.label, "rnn_backward", dy, x, self._state, dx, dw, w, *self._args(), inputs=[dy, x], outputs=outs,
               states_in=[self._state])
        if dw >= 0:
            c.updates.append((self, dw, None))  # the graph's optimizer step updates the flat weights
