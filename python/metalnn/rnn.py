"""Recurrent layers for training, as MPSRNNMatrixTrainingLayer and its descriptors.

A layer descriptor names a cell (the math is in :mod:`metalnn.ops.rnn`)::

    RNNSingleGateDescriptor(input_feature_channels=I, output_feature_channels=H, activation="tanh")
    LSTMDescriptor(I, H, use_peephole=False, forget_gate_bias=0.0)
    GRUDescriptor(I, H, flip_output_gates=False)
    MGUDescriptor(I, H, flip_output_gates=False)

:class:`RNNMatrixTrainingLayer` stacks one or more of them (optionally bidirectional) and runs
whole sequences::

    layer = RNNMatrixTrainingLayer([LSTMDescriptor(6, 32), LSTMDescriptor(32, 32)], bidirectional=False)
    weights = layer.create_weight_matrices(seed=0)
    grads = layer.create_weight_gradient_matrices(weights)
    states = []
    y = layer.encode_forward_sequence(x, None, states, weights)            # x (T, B, I) or [x_0, ...]
    dx = layer.encode_gradient_sequence(x, None, dy, grads, states, weights)

Sequences are (T, B, F) arrays or lists of T (B, F) matrices (a list in gives a list out).
Per-sequence lengths, initial states and their gradients are keyword arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ops.rnn import RNN_ACTIVATIONS, RNN_GATES, RnnState, rnn_backward, rnn_forward

__all__ = [
    "GRUDescriptor",
    "LSTMDescriptor",
    "MGUDescriptor",
    "RNNDescriptor",
    "RNNMatrixTrainingLayer",
    "RNNSingleGateDescriptor",
    "RNNTrainingState",
    "RecurrentState",
]

_OP = "rnn_layer"


@dataclass
class RNNDescriptor:
    """Common fields of every cell (MPSRNNDescriptor).

    ``use_float32_weights``: float32 weight matrices (else float16 storage; the math stays float32).
    """

    input_feature_channels: int
    output_feature_channels: int
    use_float32_weights: bool = True

    cell = ""

    def __post_init__(self) -> None:
        for name in ("input_feature_channels", "output_feature_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"[{_OP}] {name} must be a positive int, got {v!r}")

    @property
    def gates(self) -> int:
        return RNN_GATES[self.cell]

    def spec(self) -> tuple:
        """(cell, input_size, hidden_size, activation, peephole, flip_output_gates) for the ops."""
        return (self.cell, int(self.input_feature_channels), int(self.output_feature_channels), "tanh", False, False)


@dataclass
class RNNSingleGateDescriptor(RNNDescriptor):
    """h_t = activation(W x_t + U h_{t-1} + b), activation in tanh | relu | sigmoid."""

    activation: str = "tanh"
    cell = "single_gate"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in RNN_ACTIVATIONS:
            raise ValueError(f"[{_OP}] activation: unknown activation {self.activation!r} "
                             f"(expected one of {', '.join(RNN_ACTIVATIONS)})")

    def spec(self) -> tuple:
        s = super().spec()
        return s[:3] + (self.activation,) + s[4:]


@dataclass
class LSTMDescriptor(RNNDescriptor):
    """LSTM with gates i, f, g, o; optional diagonal peephole weights (MPS memory weights).

    ``forget_gate_bias`` is the initial value of the forget gate's bias block (1.0 is a common
    choice that lets early training remember), used by create_weight_matrices.
    """

    use_peephole: bool = False
    forget_gate_bias: float = 0.0
    cell = "lstm"

    def spec(self) -> tuple:
        s = super().spec()
        return s[:4] + (bool(self.use_peephole), False)


@dataclass
class GRUDescriptor(RNNDescriptor):
    """GRU with gates r (reset), z (update), n (candidate): h = (1-z)*n + z*h'."""

    flip_output_gates: bool = False
    cell = "gru"

    def spec(self) -> tuple:
        s = super().spec()
        return s[:5] + (bool(self.flip_output_gates),)


@dataclass
class MGUDescriptor(RNNDescriptor):
    """Minimal gated unit: one gate f for reset and update: h = (1-f)*h' + f*n."""

    flip_output_gates: bool = False
    cell = "mgu"

    def spec(self) -> tuple:
        s = super().spec()
        return s[:5] + (bool(self.flip_output_gates),)


@dataclass
class RecurrentState:
    """Hidden state h (B, H) and, for LSTM layers, cell state c (else None)."""

    h: np.ndarray
    c: np.ndarray | None = None


class RNNTrainingState:
    """What encode_forward_sequence keeps for encode_gradient_sequence (MPSRNNMatrixTrainingState)."""

    def __init__(self, core: RnnState, list_io: bool, lengths, final_states: list[RecurrentState]):
        self.core = core
        self.list_io = list_io
        self.lengths = lengths
        #: Each layer's and direction's state after its last step (per sequence: after its length).
        self.final_states = final_states

    def __repr__(self) -> str:
        return f"RNNTrainingState({self.core!r})"


def _is_array(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _as_sequence(v, name: str):
    """(T, B, F) array from an array or a list of (B, F) matrices; also whether it was a list."""
    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(f"[{_OP}] {name} must not be an empty list")
        mats = [np.asarray(m) for m in v]
        for k, m in enumerate(mats):
            if m.ndim != 2:
                raise ValueError(f"[{_OP}] {name}[{k}] must be a (B, F) matrix, got shape {m.shape}")
            if m.shape != mats[0].shape:
                raise ValueError(f"[{_OP}] {name}[{k}] has shape {m.shape}, {name}[0] has {mats[0].shape}")
            if m.dtype != mats[0].dtype:
                raise TypeError(f"[{_OP}] {name}[{k}] has dtype {m.dtype}, {name}[0] has {mats[0].dtype}")
        return np.ascontiguousarray(np.stack(mats)), True
    if _is_array(v):
        return v, False
    raise TypeError(f"[{_OP}] {name} must be a (T, B, F) array or a list of (B, F) matrices, got "
                    f"{type(v).__name__}")


def _write_sequence(dst, value, name: str):
    """Copies value (T, B, F) into dst (array or list of matrices), checking shapes first."""
    value = np.asarray(value)
    if isinstance(dst, (list, tuple)):
        if len(dst) != value.shape[0]:
            raise ValueError(f"[{_OP}] {name} must hold {value.shape[0]} matrices, got {len(dst)}")
        for k, m in enumerate(dst):
            if not isinstance(m, np.ndarray) or m.shape != value.shape[1:]:
                raise ValueError(f"[{_OP}] {name}[{k}] must be a {value.shape[1:]} array")
        for k, m in enumerate(dst):
            np.copyto(m, value[k], casting="unsafe")
        return dst
    if not isinstance(dst, np.ndarray) or dst.shape != value.shape:
        raise ValueError(f"[{_OP}] {name} must be a {value.shape} array")
    np.copyto(dst, value, casting="unsafe")
    return dst


class RNNMatrixTrainingLayer:
    """Stacked (optionally bidirectional) recurrent layers with trainable weights.

    Weight order (``weight_names``): per layer, per direction (forward, then backward):
    ``input_weights (G*H, I)``, ``recurrent_weights (G*H, H)``, ``bias (G*H,)`` and, for a
    peephole LSTM, ``peephole (3, H)``. ``accumulate_weight_gradients`` adds gradients into
    the weight-gradient matrices instead of overwriting them (MPS's property of that name).
    """

    def __init__(self, descriptors: RNNDescriptor | Sequence[RNNDescriptor], bidirectional: bool = False):
        descs = [descriptors] if isinstance(descriptors, RNNDescriptor) else list(descriptors)
        if not descs:
            raise ValueError(f"[{_OP}] descriptors must not be empty")
        for k, d in enumerate(descs):
            if not isinstance(d, RNNDescriptor) or not d.cell:
                raise TypeError(f"[{_OP}] descriptors[{k}] must be a cell descriptor, got {type(d).__name__}")
        D = 2 if bidirectional else 1
        for k in range(1, len(descs)):
            want = descs[k - 1].output_feature_channels * D
            if descs[k].input_feature_channels != want:
                raise ValueError(f"[{_OP}] descriptors[{k}].input_feature_channels must be {want} (the output "
                                 f"of layer {k - 1}), got {descs[k].input_feature_channels}")
        self.descriptors = descs
        self.bidirectional = bool(bidirectional)
        self.accumulate_weight_gradients = False

    # ---- shapes ----
    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def input_feature_channels(self) -> int:
        return self.descriptors[0].input_feature_channels

    @property
    def output_feature_channels(self) -> int:
        return self.descriptors[-1].output_feature_channels * self.directions

    @property
    def layers(self) -> list[tuple]:
        return [d.spec() for d in self.descriptors]

    def weight_names(self) -> list[str]:
        names = []
        for l, d in enumerate(self.descriptors):
            for dir_name in ("forward", "backward")[: self.directions]:
                parts = ["input_weights", "recurrent_weights", "bias"]
                if isinstance(d, LSTMDescriptor) and d.use_peephole:
                    parts.append("peephole")
                names += [f"layer{l}.{dir_name}.{p}" for p in parts]
        return names

    def weight_shapes(self) -> list[tuple[int, ...]]:
        shapes = []
        for d in self.descriptors:
            GH, I, H = d.gates * d.output_feature_channels, d.input_feature_channels, d.output_feature_channels
            for _ in range(self.directions):
                shapes += [(GH, I), (GH, H), (GH,)]
                if isinstance(d, LSTMDescriptor) and d.use_peephole:
                    shapes.append((3, H))
        return shapes

    def _weight_dtypes(self) -> list[np.dtype]:
        out = []
        for d in self.descriptors:
            n = 4 if isinstance(d, LSTMDescriptor) and d.use_peephole else 3
            out += [np.dtype(np.float32 if d.use_float32_weights else np.float16)] * (n * self.directions)
        return out

    # ---- weights ----
    def create_weight_matrices(self, seed: int = 0) -> list[np.ndarray]:
        """Trainable weights, uniform in +-1/sqrt(H) (the LSTM forget bias block set from its descriptor)."""
        r = np.random.default_rng(seed)
        out = []
        shapes, dtypes = self.weight_shapes(), self._weight_dtypes()
        k = 0
        for d in self.descriptors:
            H = d.output_feature_channels
            bound = 1.0 / math.sqrt(H)
            n = 4 if isinstance(d, LSTMDescriptor) and d.use_peephole else 3
            for _ in range(self.directions):
                for j in range(n):
                    w = r.uniform(-bound, bound, shapes[k]).astype(np.float32)
                    if j == 2 and isinstance(d, LSTMDescriptor):
                        w[H:2 * H] = d.forget_gate_bias
                    out.append(w.astype(dtypes[k]))
                    k += 1
        return out

    def create_weight_gradient_matrices(self, weights: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Zeroed gradient matrices with the shapes and dtypes of the weights."""
        if weights is not None:
            self._check_weights(weights)
            return [np.zeros(np.shape(w), dtype=np.dtype(w.dtype)) for w in weights]
        return [np.zeros(s, dtype=t) for s, t in zip(self.weight_shapes(), self._weight_dtypes())]

    def _check_weights(self, weights) -> list:
        if weights is None:
            raise TypeError(f"[{_OP}] weights are required (from create_weight_matrices)")
        weights = list(weights)
        shapes = self.weight_shapes()
        if len(weights) != len(shapes):
            raise ValueError(f"[{_OP}] weights must hold {len(shapes)} matrices, got {len(weights)}")
        for k, (w, s) in enumerate(zip(weights, shapes)):
            if tuple(np.shape(w)) != s:  # names only for the message: this runs every step
                raise ValueError(f"[{_OP}] weights ({self.weight_names()[k]}) must have shape {s}, got "
                                 f"{tuple(np.shape(w))}")
        return weights

    # ---- sequences ----
    def encode_forward_sequence(
        self,
        sources,
        destinations=None,
        training_states: list | None = None,
        weights: Sequence[np.ndarray] | None = None,
        *,
        initial_states: Sequence[RecurrentState | None] | None = None,
        lengths=None,
    ):
        """Runs the layers over ``sources``; returns the destinations (filled in place when given).

        ``training_states``: a list that receives the :class:`RNNTrainingState` for the gradient
        (None: inference only). ``initial_states``: one :class:`RecurrentState` (or None) per
        layer and direction. ``lengths``: (B,) ints, sequence b active for t < lengths[b].
        """
        x, list_io = _as_sequence(sources, "sources")
        weights = self._check_weights(weights)
        h0, c0 = self._split_states(initial_states, "initial_states")
        y, h_last, c_last, core = rnn_forward(x, weights, self.layers, self.bidirectional, h0, c0, lengths,
                                              training=training_states is not None)
        finals = [RecurrentState(h, c) for h, c in zip(h_last, c_last)]
        if training_states is not None:
            training_states.clear()
            training_states.append(RNNTrainingState(core, list_io, lengths, finals))
        self.final_states = finals
        if destinations is not None:
            return _write_sequence(destinations, y, "destinations")
        return list(y) if list_io else y

    def encode_gradient_sequence(
        self,
        forward_sources,
        source_gradients=None,
        destination_gradients=None,
        weight_gradients: list[np.ndarray] | None = None,
        training_states=None,
        weights: Sequence[np.ndarray] | None = None,
        *,
        final_state_gradients: Sequence[RecurrentState | None] | None = None,
        initial_state_gradients: list | None = None,
    ):
        """Backpropagation through the whole sequence; returns dL/d(sources).

        ``destination_gradients``: dL/dy (None when only final states carry a gradient).
        ``weight_gradients``: matrices filled with dL/dW (added to when accumulate_weight_gradients).
        ``final_state_gradients``: dL/d(final states), one RecurrentState (or None) per layer
        and direction. ``initial_state_gradients``: a list that receives dL/d(initial states)
        as RecurrentStates.
        """
        state = training_states[0] if isinstance(training_states, (list, tuple)) and training_states \
            else training_states
        if not isinstance(state, RNNTrainingState):
            raise TypeError(f"[{_OP}] training_states must hold the state encode_forward_sequence made")
        x, list_io = _as_sequence(forward_sources, "forward_sources")
        weights = self._check_weights(weights)
        dy = None
        if destination_gradients is not None:
            dy, _ = _as_sequence(destination_gradients, "destination_gradients")
        dh, dc = self._split_states(final_state_gradients, "final_state_gradients")
        if weight_gradients is not None:
            wg = list(weight_gradients)
            if len(wg) != len(weights):
                raise ValueError(f"[{_OP}] weight_gradients must hold {len(weights)} matrices, got {len(wg)}")
            for k, (g, w) in enumerate(zip(wg, weights)):
                if not isinstance(g, np.ndarray) or g.shape != np.shape(w):
                    raise ValueError(f"[{_OP}] weight_gradients ({self.weight_names()[k]}) must be an array of "
                                     f"shape {np.shape(w)}")
        # Gradient matrices the kernel can write itself (no copy): contiguous, the weights' dtype.
        direct = weight_gradients is not None and not self.accumulate_weight_gradients and all(
            isinstance(w, np.ndarray) and g.dtype == w.dtype and g.flags.c_contiguous and g.flags.writeable
            for g, w in zip(wg, weights))
        dx, dweights, dh0, dc0 = rnn_backward(x, dy, weights, self.layers, self.bidirectional, state.core,
                                              dh, dc, initial_state_gradients is not None,
                                              dweights_out=wg if direct else None)
        if weight_gradients is not None and not direct:
            for g, d in zip(weight_gradients, dweights):
                if self.accumulate_weight_gradients:
                    g += np.asarray(d, dtype=g.dtype)
                else:
                    np.copyto(g, d, casting="unsafe")
        if initial_state_gradients is not None:
            initial_state_gradients.clear()
            initial_state_gradients.extend(RecurrentState(h, c) for h, c in zip(dh0, dc0))
        if source_gradients is not None:
            return _write_sequence(source_gradients, dx, "source_gradients")
        return list(dx) if list_io else dx

    def _split_states(self, states, name: str):
        if states is None:
            return None, None
        states = list(states)
        n = len(self.descriptors) * self.directions
        if len(states) != n:
            raise ValueError(f"[{_OP}] {name} must hold one RecurrentState per layer and direction ({n}), "
                             f"got {len(states)}")
        h, c = [], []
        for k, s in enumerate(states):
            if s is None:
                h.append(None)
                c.append(None)
            elif isinstance(s, RecurrentState):
                h.append(s.h)
                c.append(s.c)
            else:
                raise TypeError(f"[{_OP}] {name}[{k}] must be a RecurrentState or None")
        return h, c
