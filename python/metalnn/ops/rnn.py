"""Recurrent layers over whole sequences, as MPSRNNMatrixTrainingLayer.

A sequence is ``x`` of shape (T, B, I): T time steps of a (B, I) batch. A layer of H units
with G gate blocks keeps a hidden state h (B, H) (LSTM also a cell state c) and computes,
for every step t (gate blocks of ``a`` in this order, each H wide)::

    a_t = W x_t + U h_{t-1} + b                  W (G*H, I), U (G*H, H), b (G*H,)

    single_gate  G=1   h_t = act(a_t)                       act in tanh | relu | sigmoid
    lstm         G=4   i = s(a_i + p_i*c_{t-1}),  f = s(a_f + p_f*c_{t-1}),  g = tanh(a_g)
                       c_t = f*c_{t-1} + i*g
                       o = s(a_o + p_o*c_t),  h_t = o*tanh(c_t)     (p: peephole (3, H), optional)
    gru          G=3   r = s(a_r), z = s(a_z)
                       n = tanh(W_n x_t + U_n (r*h_{t-1}) + b_n)
                       h_t = (1-z)*n + z*h_{t-1}
    mgu          G=2   f = s(a_f)
                       n = tanh(W_n x_t + U_n (f*h_{t-1}) + b_n)
                       h_t = (1-f)*h_{t-1} + f*n

with s the logistic sigmoid. ``flip_output_gates`` swaps the two weights of the GRU/MGU
output mix. The output is y_t = h_t.

Stacked layers feed y of layer l to layer l+1. Bidirectional layers run a second set of
weights from t = T-1 down to 0 and concatenate: y_t = [h_t(forward), h_t(backward)] (D = 2).

Variable lengths: with ``lengths[b] = L_b``, sequence b is only updated at t < L_b (the
backward direction starts at its own t = L_b - 1); later steps carry its state unchanged and
output zeros, and their inputs get zero gradient. Final states are each sequence's state after
its last step.

Weights come as one flat list, per layer then direction: ``input_weights (G*H, I_l)``,
``recurrent_weights (G*H, H)``, ``bias (G*H,)`` and, for a peephole LSTM, ``peephole (3, H)``.
float32 or float16 storage for data and weights independently; everything is computed in
float32 and rounded once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import _core
from ._util import ArrayLike

#: The state rnn_forward(training=True) returns, for rnn_backward.
RnnState = _core.ops.RnnState

RNN_CELLS = ("single_gate", "lstm", "gru", "mgu")
RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid")
#: Gate blocks per cell.
RNN_GATES = {"single_gate": 1, "lstm": 4, "gru": 3, "mgu": 2}

#: One layer: (cell, input_size, hidden_size, activation, peephole, flip_output_gates).
LayerSpec = tuple


def rnn_forward(
    x: ArrayLike,
    weights: Sequence[ArrayLike],
    layers: Sequence[LayerSpec],
    bidirectional: bool = False,
    h0: Sequence[ArrayLike | None] | None = None,
    c0: Sequence[ArrayLike | None] | None = None,
    lengths: ArrayLike | None = None,
    training: bool = False,
):
    """Runs the stacked layers over x (T, B, I); see the module docstring for the math.

    Returns ``(y, h_last, c_last, state)``: y (T, B, D*H_last); h_last / c_last one (B, H_l)
    array per layer and direction (c_last entries None for non-LSTM layers); state an
    :class:`RnnState` when ``training`` else None. h0 / c0: None for zeros, or one (B, H_l)
    array (or None) per layer and direction.
    """
    return _core.ops.rnn_forward(x, list(weights), list(layers), bidirectional, _opt_list(h0),
                                 _opt_list(c0), lengths, training)


def rnn_backward(
    x: ArrayLike,
    dy: ArrayLike | None,
    weights: Sequence[ArrayLike],
    layers: Sequence[LayerSpec],
    bidirectional: bool,
    state: RnnState,
    dh_last: Sequence[ArrayLike | None] | None = None,
    dc_last: Sequence[ArrayLike | None] | None = None,
    initial_state_gradients: bool = True,
    dweights_out: Sequence[np.ndarray] | None = None,
):
    """Gradients of a loss L through the whole sequence (backpropagation through time).

    Given dy = dL/dy (None: zero) and optionally dL/d(final states), returns
    ``(dx, dweights, dh0, dc0)``: dL/dx, dL/d(each weight) in the weights' order and dtypes,
    and dL/d(initial states) per layer and direction (dc0 entries None for non-LSTM layers).
    ``initial_state_gradients=False``: dh0 / dc0 entries are None and not computed (saves the
    first step's recurrent product on the CPU). ``dweights_out``: C-contiguous writeable arrays
    (the weights' shapes and dtypes) that receive dweights in place; they are returned as dweights.
    """
    return _core.ops.rnn_backward(x, dy, list(weights), list(layers), bidirectional, state,
                                  _opt_list(dh_last), _opt_list(dc_last), initial_state_gradients,
                                  None if dweights_out is None else list(dweights_out))


def _opt_list(v):
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        return list(v)
    return list(v)
