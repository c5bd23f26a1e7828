"""RNN layers: every cell's forward against a float64 numpy reference (step by step), whole-
sequence gradients (inputs, weights, initial states) against finite differences, including
bidirectional, stacked and variable-length batches; float16; odd sizes; the training-layer API;
bad input."""

import numpy as np
import pytest
from rnn_reference import CELLS, IDS, make_weights, ref_rnn

from metalnn.ops.rnn import rnn_backward, rnn_forward
from metalnn.rnn import (
    GRUDescriptor,
    LSTMDescriptor,
    MGUDescriptor,
    RecurrentState,
    RNNMatrixTrainingLayer,
    RNNSingleGateDescriptor,
)

from helpers import assert_close, raises_named, rng


def _layers(cell, sizes, bidirectional=False):
    """Stacked specs for sizes [I, H1, H2, ...]."""
    c, act, peep, flip = cell
    D = 2 if bidirectional else 1
    out = []
    for k in range(len(sizes) - 1):
        inp = sizes[k] if k == 0 else sizes[k] * D
        out.append((c, inp, sizes[k + 1], act, peep, flip))
    return out


def _states(r, layers, D, B, scale=0.5):
    h = [(r.standard_normal((B, s[2])) * scale).astype(np.float32) for s in layers for _ in range(D)]
    c = [(r.standard_normal((B, s[2])) * scale).astype(np.float32) if s[0] == "lstm" else None
         for s in layers for _ in range(D)]
    return h, c


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_matches_reference(cell, bidirectional):
    r = rng(1)
    D = 2 if bidirectional else 1
    layers = _layers(cell, [7, 9, 5], bidirectional)
    w = make_weights(layers, bidirectional, seed=2)
    x = r.standard_normal((6, 5, 7)).astype(np.float32)
    h0, c0 = _states(r, layers, D, 5)
    lengths = np.array([6, 3, 0, 5, 1], np.int32)
    for lens in (None, lengths):
        y, hl, cl, st = rnn_forward(x, w, layers, bidirectional, h0, c0, lens)
        yr, hr, cr = ref_rnn(layers, bidirectional, x, w, h0, c0, lens)
        assert st is None and y.shape == (6, 5, 5 * D) and y.dtype == np.float32
        assert_close(y, yr, atol=2e-6, rtol=2e-6, what="y")
        for k in range(len(hl)):
            assert_close(hl[k], hr[k], atol=2e-6, rtol=2e-6, what=f"h_last[{k}]")
            if cell[0] == "lstm":
                assert_close(cl[k], cr[k], atol=2e-6, rtol=2e-6, what=f"c_last[{k}]")
            else:
                assert cl[k] is None


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_step_by_step_equals_whole_sequence(cell):
    # Running one step at a time, feeding each final state back as the next initial state,
    # gives the whole-sequence result.
    r = rng(3)
    layers = _layers(cell, [4, 6])
    w = make_weights(layers, False, seed=4)
    x = r.standard_normal((5, 3, 4)).astype(np.float32)
    y, hl, cl, _ = rnn_forward(x, w, layers)
    h, c = None, None
    for t in range(5):
        yt, h, c, _ = rnn_forward(x[t:t + 1], w, layers, h0=h, c0=c)
        assert_close(yt[0], y[t], atol=1e-6, rtol=1e-6, what=f"step {t}")
    assert_close(h[0], hl[0], atol=1e-6, rtol=1e-6)


def _loss_grads(layers, bidirectional, x, w, h0, c0, lengths, dy, gh, gc):
    """Analytic gradients of L = sum(y*dy) + sum(h_last*gh) + sum(c_last*gc) from the kernels."""
    _, _, _, st = rnn_forward(x, w, layers, bidirectional, h0, c0, lengths, training=True)
    return rnn_backward(x, dy, w, layers, bidirectional, st, gh, gc)


def _ref_loss(layers, bidirectional, x, w, h0, c0, lengths, dy, gh, gc):
    y, hs, cs = ref_rnn(layers, bidirectional, x, w, h0, c0, lengths)
    total = np.sum(y * dy) + sum(np.sum(h * g) for h, g in zip(hs, gh))
    total += sum(np.sum(c * g) for c, g in zip(cs, gc) if c is not None and g is not None)
    return total


def _fd_check(loss, arrays, grads, names, r, eps=1e-5, max_points=14, atol=2e-5, rtol=2e-4):
    """Central differences of the float64 loss at up to max_points random elements of each array."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    for k, (a, g) in enumerate(zip(arrays, grads)):
        if a is None or g is None:
            continue
        flat = a.reshape(-1)
        idx = r.choice(flat.size, size=min(max_points, flat.size), replace=False)
        for i in idx:
            orig = flat[i]
            flat[i] = orig + eps
            plus = loss(arrays)
            flat[i] = orig - eps
            minus = loss(arrays)
            flat[i] = orig
            num = (plus - minus) / (2 * eps)
            got = float(np.asarray(g, np.float64).reshape(-1)[i])
            assert abs(got - num) <= atol + rtol * abs(num), f"{names[k]}[{i}]: kernel {got} vs fd {num}"


GRAD_CASES = {
    "single": ([5, 4], False, False),
    "bidirectional": ([5, 4], True, False),
    "stacked": ([5, 4, 3], False, False),
    "varlen": ([5, 4], False, True),
    "stacked-bidirectional-varlen": ([5, 4, 3], True, True),
}


# Activations other than tanh only in the single-layer case (the layer wiring is the same).
GRAD_PARAMS = [pytest.param(cell, case, id=f"{i}-{case}") for cell, i in zip(CELLS, IDS) for case in GRAD_CASES
               if case == "single" or cell[1] == "tanh"]


@pytest.mark.parametrize("cell,case", GRAD_PARAMS)
def test_gradients_match_finite_differences(cell, case):
    sizes, bidirectional, varlen = GRAD_CASES[case]
    r = rng(5)
    D = 2 if bidirectional else 1
    layers = _layers(cell, sizes, bidirectional)
    T, B = 5, 3
    w = make_weights(layers, bidirectional, seed=6, scale=0.6)
    x = r.standard_normal((T, B, sizes[0])).astype(np.float32)
    if cell[1] == "relu":  # keep pre-activations away from the kink
        x = x + np.sign(x) * 0.1
    h0, c0 = _states(r, layers, D, B)
    lengths = np.array([5, 2, 4], np.int64) if varlen else None
    dy = r.standard_normal((T, B, sizes[-1] * D)).astype(np.float32)
    gh, gc = _states(r, layers, D, B, scale=1.0)
    dx, dw, dh0, dc0 = _loss_grads(layers, bidirectional, x, w, h0, c0, lengths, dy, gh, gc)
    nw = len(w)
    nh = len(h0)

    def loss(arrs):
        xx, ww = arrs[0], arrs[1:1 + nw]
        hh = arrs[1 + nw:1 + nw + nh]
        cc = arrs[1 + nw + nh:]
        return _ref_loss(layers, bidirectional, xx, ww, hh, cc, lengths, dy, gh, gc)

    c0_arrays = [c if c is not None else None for c in c0]
    arrays = [x] + list(w) + list(h0) + c0_arrays
    grads = [dx] + list(dw) + list(dh0) + list(dc0)
    names = ["x"] + [f"w{k}" for k in range(nw)] + [f"h0[{k}]" for k in range(nh)] + [f"c0[{k}]" for k in range(nh)]
    # c0 entries of non-LSTM layers stay None in both lists; the loss ignores them.
    _fd_check(loss, [a if a is not None else None for a in arrays], grads, names, r)
    if varlen:
        # Padding steps get zero gradient; sequences of length 0 none at all.
        assert np.all(dx[2:, 1] == 0) and np.all(dx[4:, 2] == 0)


@pytest.mark.parametrize("cell", [c for c in CELLS if c[1] == "tanh"],
                         ids=[i for c, i in zip(CELLS, IDS) if c[1] == "tanh"])
@pytest.mark.parametrize("h0_kind", ["none", "zeros", "one-nonzero-row"])
def test_weight_gradients_with_zero_initial_state(cell, h0_kind):
    # A zero initial state lets the recurrent weight products skip the first step's rows (the
    # last ones backward); a single nonzero entry must keep them. Stacked, bidirectional, T = 4.
    r = rng(21)
    sizes = [5, 4, 3]
    layers = _layers(cell, sizes, True)
    T, B = 4, 3
    w = make_weights(layers, True, seed=22, scale=0.6)
    x = r.standard_normal((T, B, sizes[0])).astype(np.float32)
    h0 = c0 = None
    if h0_kind != "none":
        h0 = [np.zeros((B, s[2]), np.float32) for s in layers for _ in range(2)]
        if h0_kind == "one-nonzero-row":
            for h in h0:
                h[1, 0] = 0.7
    dy = r.standard_normal((T, B, sizes[-1] * 2)).astype(np.float32)
    gh, gc = _states(r, layers, 2, B, scale=1.0)
    _, dw, _, _ = _loss_grads(layers, True, x, w, h0, c0, None, dy, gh, gc)
    nw = len(w)

    def loss(arrs):
        return _ref_loss(layers, True, x, arrs, h0, c0, None, dy, gh, gc)

    _fd_check(loss, list(w), list(dw), [f"w{k}" for k in range(nw)], r, max_points=24)


def test_gradients_against_kernel_forward():
    # The kernel's own float32 forward, differentiated numerically, agrees with its backward.
    r = rng(7)
    layers = _layers(("lstm", "tanh", True, False), [3, 4])
    w = make_weights(layers, True, seed=8)
    x = r.standard_normal((4, 2, 3)).astype(np.float32)
    dy = r.standard_normal((4, 2, 8)).astype(np.float32)
    _, _, _, st = rnn_forward(x, w, layers, True, training=True)
    dx, dw, _, _ = rnn_backward(x, dy, w, layers, True, st)
    eps = 1e-2
    for k in range(x.size):
        xp, xm = x.copy().reshape(-1), x.copy().reshape(-1)
        xp[k] += eps
        xm[k] -= eps
        yp = rnn_forward(xp.reshape(x.shape), w, layers, True)[0]
        ym = rnn_forward(xm.reshape(x.shape), w, layers, True)[0]
        num = np.sum((yp.astype(np.float64) - ym) * dy) / (2 * eps)
        assert abs(num - dx.reshape(-1)[k]) < 5e-3 + 5e-3 * abs(num)


def test_variable_length_matches_truncated_sequences():
    # Each sequence of a padded batch gives what it gives alone, cut to its length.
    r = rng(9)
    layers = _layers(("gru", "tanh", False, False), [4, 5])
    w = make_weights(layers, True, seed=10)
    x = r.standard_normal((6, 3, 4)).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int32)
    y, hl, _, _ = rnn_forward(x, w, layers, True, lengths=lengths)
    for b in range(3):
        n = lengths[b]
        yb, hb, _, _ = rnn_forward(np.ascontiguousarray(x[:n, b:b + 1]), w, layers, True)
        assert_close(y[:n, b], yb[:, 0], atol=1e-6, rtol=1e-6)
        assert np.all(y[n:, b] == 0)
        assert_close(hl[0][b], hb[0][0], atol=1e-6, rtol=1e-6)  # forward: after step n-1
        assert_close(hl[1][b], hb[1][0], atol=1e-6, rtol=1e-6)  # backward: after step 0


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_float16(cell):
    # float16 data and weights: computed in float32 from the rounded inputs, rounded once.
    r = rng(11)
    layers = _layers(cell, [6, 7, 5], True)
    w32 = make_weights(layers, True, seed=12)
    x32 = r.standard_normal((5, 3, 6)).astype(np.float32)
    x16, w16 = x32.astype(np.float16), [a.astype(np.float16) for a in w32]
    y16, h16, _, st16 = rnn_forward(x16, w16, layers, True, training=True)
    y, h, _, st = rnn_forward(x16.astype(np.float32), [a.astype(np.float32) for a in w16], layers, True,
                              training=True)
    assert y16.dtype == np.float16 and h16[0].dtype == np.float16
    assert_close(y16, y, atol=2e-3, rtol=2e-3)
    dy = r.standard_normal(y.shape).astype(np.float32)
    dx16, dw16, _, _ = rnn_backward(x16, dy.astype(np.float16), w16, layers, True, st16)
    dx, dw, _, _ = rnn_backward(x16.astype(np.float32), dy.astype(np.float16).astype(np.float32),
                                [a.astype(np.float32) for a in w16], layers, True, st)
    assert dx16.dtype == np.float16 and all(g.dtype == np.float16 for g in dw16)
    assert_close(dx16, dx, atol=4e-3, rtol=4e-3)
    for a, b in zip(dw16, dw):
        assert_close(a, b, atol=4e-3, rtol=4e-3)
    # Mixed: float32 data with float16 weights (use_float32_weights=False).
    ym, _, _, _ = rnn_forward(x32, w16, layers, True)
    assert ym.dtype == np.float32


def test_odd_sizes_and_long_sequences():
    r = rng(13)
    layers = _layers(("lstm", "tanh", False, False), [13, 33, 17])
    w = make_weights(layers, False, seed=14, scale=0.2)
    x = r.standard_normal((37, 9, 13)).astype(np.float32)
    lengths = r.integers(0, 38, size=9)
    y, _, _, _ = rnn_forward(x, w, layers, lengths=lengths)
    yr, _, _ = ref_rnn(layers, False, x, w, lengths=lengths)
    assert_close(y, yr, atol=5e-6, rtol=5e-6)


def test_nan_propagates_along_its_sequence_only():
    layers = _layers(("lstm", "tanh", False, False), [3, 4])
    w = make_weights(layers, False)
    x = rng(15).standard_normal((4, 3, 3)).astype(np.float32)
    x[1, 1, 0] = np.nan
    y, _, _, _ = rnn_forward(x, w, layers)
    assert np.all(np.isnan(y[1:, 1])) and not np.any(np.isnan(y[0])) and not np.any(np.isnan(y[:, [0, 2]]))


# ---- the training-layer API ----

DESCRIPTORS = {
    "single_gate": lambda i, h: RNNSingleGateDescriptor(i, h, activation="relu"),
    "lstm": lambda i, h: LSTMDescriptor(i, h, use_peephole=True, forget_gate_bias=1.0),
    "gru": lambda i, h: GRUDescriptor(i, h),
    "mgu": lambda i, h: MGUDescriptor(i, h, flip_output_gates=True),
}


@pytest.mark.parametrize("cell", list(DESCRIPTORS))
def test_training_layer_api(cell):
    r = rng(16)
    make = DESCRIPTORS[cell]
    layer = RNNMatrixTrainingLayer([make(5, 6), make(12, 4)], bidirectional=True)
    weights = layer.create_weight_matrices(seed=1)
    assert [w.shape for w in weights] == layer.weight_shapes()
    if cell == "lstm":
        assert np.all(weights[2][6:12] == 1.0)  # forget gate bias block
    grads = layer.create_weight_gradient_matrices(weights)
    assert all(np.all(g == 0) and g.shape == w.shape for g, w in zip(grads, weights))
    xs = [r.standard_normal((3, 5)).astype(np.float32) for _ in range(4)]
    states = []
    ys = layer.encode_forward_sequence(xs, None, states, weights)
    assert isinstance(ys, list) and len(ys) == 4 and ys[0].shape == (3, 8) and len(states) == 1
    y_ref, _, _ = ref_rnn(layer.layers, True, np.stack(xs), weights)
    assert_close(np.stack(ys), y_ref, atol=2e-6, rtol=2e-6)
    # destinations filled in place (array form)
    dest = np.zeros((4, 3, 8), np.float32)
    out = layer.encode_forward_sequence(np.stack(xs), dest, None, weights)
    assert out is dest and np.allclose(dest, y_ref, atol=2e-6)
    dys = [r.standard_normal((3, 8)).astype(np.float32) for _ in range(4)]
    init_grads = []
    dxs = layer.encode_gradient_sequence(xs, None, dys, grads, states, weights, initial_state_gradients=init_grads)
    dx, dw, dh0, dc0 = rnn_backward(np.stack(xs), np.stack(dys), weights, layer.layers, True, states[0].core)
    assert_close(np.stack(dxs), dx)
    for g, d in zip(grads, dw):
        assert_close(g, d)
    assert len(init_grads) == 4 and isinstance(init_grads[0], RecurrentState)
    assert_close(init_grads[0].h, dh0[0])
    assert (init_grads[0].c is not None) == (cell == "lstm")
    # accumulate_weight_gradients adds
    layer.accumulate_weight_gradients = True
    layer.encode_gradient_sequence(xs, None, dys, grads, states, weights)
    for g, d in zip(grads, dw):
        assert_close(g, 2 * d)


def test_training_layer_initial_states_and_lengths():
    r = rng(17)
    layer = RNNMatrixTrainingLayer(LSTMDescriptor(4, 5))
    w = layer.create_weight_matrices(seed=3)
    x = r.standard_normal((5, 2, 4)).astype(np.float32)
    init = [RecurrentState(r.standard_normal((2, 5)).astype(np.float32), r.standard_normal((2, 5)).astype(np.float32))]
    states = []
    lengths = np.array([5, 3])
    y = layer.encode_forward_sequence(x, None, states, w, initial_states=init, lengths=lengths)
    yr, hr, cr = ref_rnn(layer.layers, False, x, w, [init[0].h], [init[0].c], lengths)
    assert_close(y, yr, atol=2e-6, rtol=2e-6)
    assert_close(states[0].final_states[0].h, hr[0], atol=2e-6, rtol=2e-6)
    assert_close(states[0].final_states[0].c, cr[0], atol=2e-6, rtol=2e-6)
    # Only the final state carries a gradient.
    g = []
    fsg = [RecurrentState(np.ones((2, 5), np.float32), None)]
    dx = layer.encode_gradient_sequence(x, None, None, None, states, w, final_state_gradients=fsg,
                                        initial_state_gradients=g)
    assert dx.shape == x.shape and np.all(dx[3:, 1] == 0) and np.any(dx[:, 0] != 0)
    assert g[0].h.shape == (2, 5) and g[0].c.shape == (2, 5)


# ---- bad input ----

def _good():
    layers = _layers(("lstm", "tanh", False, False), [3, 4])
    return layers, make_weights(layers, False), rng(0).standard_normal((4, 2, 3)).astype(np.float32)


def test_bad_inputs_raise_named_errors():
    layers, w, x = _good()
    with raises_named(ValueError, "rnn_forward", "x"):
        rnn_forward(x[0], w, layers)
    with raises_named(ValueError, "rnn_forward", "features"):
        rnn_forward(np.zeros((4, 2, 5), np.float32), w, layers)
    with raises_named(ValueError, "rnn_forward", "x"):
        rnn_forward(np.zeros((0, 2, 3), np.float32), w, layers)
    with raises_named(TypeError, "rnn_forward", "x"):
        rnn_forward(x.astype(np.int32), w, layers)
    with raises_named(ValueError, "rnn_forward", "x"):
        rnn_forward(np.zeros((4, 3, 2), np.float32).transpose(0, 2, 1), w, layers)  # non-contiguous
    with raises_named(ValueError, "rnn_forward", "weights"):
        rnn_forward(x, w[:2], layers)
    with raises_named(ValueError, "rnn_forward", "weights[1]"):
        rnn_forward(x, [w[0], w[0], w[2]], layers)
    with raises_named(TypeError, "rnn_forward", "weights[2]"):
        rnn_forward(x, [w[0], w[1], w[2].astype(np.int64)], layers)
    with raises_named(ValueError, "rnn_forward", "cell"):
        rnn_forward(x, w, [("rnn",) + layers[0][1:]])
    with raises_named(ValueError, "rnn_forward", "activation"):
        rnn_forward(x, w, [layers[0][:3] + ("elu",) + layers[0][4:]])
    with raises_named(ValueError, "rnn_forward", "hidden_size"):
        rnn_forward(x, w, [layers[0][:2] + (0,) + layers[0][3:]])
    with raises_named(ValueError, "rnn_forward", "peephole"):
        rnn_forward(x, w, [("gru", 3, 4, "tanh", True, False)])
    with raises_named(ValueError, "rnn_forward", "layers[1].input_size"):
        rnn_forward(x, w, layers + [("lstm", 5, 4, "tanh", False, False)])
    with raises_named(ValueError, "rnn_forward", "h0[0]"):
        rnn_forward(x, w, layers, h0=[np.zeros((2, 5), np.float32)])
    with raises_named(ValueError, "rnn_forward", "h0"):
        rnn_forward(x, w, layers, h0=[None, None])
    with raises_named(ValueError, "rnn_forward", "c0[0]"):
        rnn_forward(x, make_weights([("gru", 3, 4, "tanh", False, False)], False), [("gru", 3, 4, "tanh", False,
                    False)], c0=[np.zeros((2, 4), np.float32)])
    with raises_named(ValueError, "rnn_forward", "lengths[1]"):
        rnn_forward(x, w, layers, lengths=np.array([4, 5]))
    with raises_named(ValueError, "rnn_forward", "lengths"):
        rnn_forward(x, w, layers, lengths=np.array([4, 1, 1]))
    with raises_named(TypeError, "rnn_forward", "lengths"):
        rnn_forward(x, w, layers, lengths=np.array([4.0, 1.0], np.float32))
    _, _, _, st = rnn_forward(x, w, layers, training=True)
    dy = np.ones((4, 2, 4), np.float32)
    with raises_named(ValueError, "rnn_backward", "dy"):
        rnn_backward(x, dy[:, :, :3], w, layers, False, st)
    with raises_named(TypeError, "rnn_backward", "dy"):
        rnn_backward(x, dy.astype(np.float16), w, layers, False, st)
    with raises_named(ValueError, "rnn_backward", "x"):
        rnn_backward(x[:3].copy(), dy[:3].copy(), w, layers, False, st)
    with raises_named(TypeError, "rnn_backward", "state"):
        rnn_backward(x, dy, w, layers, False, "state")
    with raises_named(ValueError, "rnn_backward", "state"):
        rnn_backward(x, dy, make_weights(layers, True), layers, True, st)
    with raises_named(ValueError, "rnn_backward", "dh_last[0]"):
        rnn_backward(x, dy, w, layers, False, st, dh_last=[np.zeros((3, 4), np.float32)])


def test_training_layer_bad_inputs_leave_outputs_untouched():
    layer = RNNMatrixTrainingLayer(GRUDescriptor(3, 4))
    w = layer.create_weight_matrices()
    x = rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    dest = np.full((4, 2, 4), 7.0, np.float32)
    with raises_named(ValueError, "rnn_forward", "lengths[0]"):
        layer.encode_forward_sequence(x, dest, [], w, lengths=np.array([9, 1]))
    assert np.all(dest == 7.0)
    with raises_named(ValueError, "rnn_layer", "weights"):
        layer.encode_forward_sequence(x, dest, [], w[:2])
    with raises_named(ValueError, "rnn_layer", "sources[1]"):
        layer.encode_forward_sequence([x[0], x[1, :1]], None, [], w)
    with raises_named(ValueError, "rnn_layer", "input_feature_channels"):
        RNNMatrixTrainingLayer([GRUDescriptor(3, 4), GRUDescriptor(5, 4)])
    with raises_named(ValueError, "rnn_layer", "activation"):
        RNNSingleGateDescriptor(3, 4, activation="gelu")
    with raises_named(ValueError, "rnn_layer", "output_feature_channels"):
        LSTMDescriptor(3, 0)
    states = []
    layer.encode_forward_sequence(x, None, states, w)
    grads = [np.full(a.shape, 5.0, np.float32) for a in w]
    with raises_named(ValueError, "rnn_backward", "dy"):
        layer.encode_gradient_sequence(x, None, np.zeros((4, 2, 3), np.float32), grads, states, w)
    assert all(np.all(g == 5.0) for g in grads)
    with raises_named(TypeError, "rnn_layer", "training_states"):
        layer.encode_gradient_sequence(x, None, np.zeros((4, 2, 4), np.float32), grads, [], w)


def test_training_layer_float16_weights_and_list_outputs():
    # use_float32_weights=False: float16 weight matrices and gradients; float16 data computes in
    # float32 and rounds once, so it matches the float32 run on the rounded inputs.
    r = rng(18)
    layer = RNNMatrixTrainingLayer([GRUDescriptor(4, 5, use_float32_weights=False)])
    w16 = layer.create_weight_matrices(seed=2)
    assert all(a.dtype == np.float16 for a in w16)
    g16 = layer.create_weight_gradient_matrices(w16)
    assert all(g.dtype == np.float16 for g in g16)
    xs = [r.standard_normal((3, 4)).astype(np.float16) for _ in range(5)]
    dest = [np.zeros((3, 5), np.float16) for _ in range(5)]
    states = []
    out = layer.encode_forward_sequence(xs, dest, states, w16)
    assert out is dest
    ref, _, _, st = rnn_forward(np.stack(xs).astype(np.float32), [a.astype(np.float32) for a in w16], layer.layers,
                                training=True)
    assert_close(np.stack(dest), ref, atol=2e-3, rtol=2e-3)
    dys = [r.standard_normal((3, 5)).astype(np.float16) for _ in range(5)]
    dxs = [np.zeros((3, 4), np.float16) for _ in range(5)]
    got = layer.encode_gradient_sequence(xs, dxs, dys, g16, states, w16)
    assert got is dxs
    dx, dw, _, _ = rnn_backward(np.stack(xs).astype(np.float32), np.stack(dys).astype(np.float32),
                                [a.astype(np.float32) for a in w16], layer.layers, False, st)
    assert_close(np.stack(dxs), dx, atol=4e-3, rtol=4e-3)
    for g, d in zip(g16, dw):
        assert_close(g, d, atol=4e-3, rtol=4e-3)
