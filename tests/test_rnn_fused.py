"""The CPU LSTM's fused per-step kernels (backend/cpu/rnn_lstm.cpp: packed weights, register-tiled
step product with the cell as epilogue; a team of two threads splits the batch rows, or the hidden
units when the batch is small).

They run for LSTM layers without peephole or sequence lengths. Sizes are chosen so the unit
chunks (8 or 16 units), row tiles and the two-thread team all have tails: the forward is checked
against the float64 reference, the gradients against the general path (the same layer with every
sequence at full length, which takes the BLAS-per-step route) and against finite differences
of the reference at a few points, with one thread and with two.
"""

import numpy as np
import pytest
from rnn_reference import make_weights, ref_rnn

import metalnn as mnn
from metalnn.ops.rnn import rnn_backward, rnn_forward

from helpers import assert_close, rng


def _lstm(sizes, bidirectional=False):
    D = 2 if bidirectional else 1
    return [("lstm", sizes[k] if k == 0 else sizes[k] * D, sizes[k + 1], "tanh", False, False)
            for k in range(len(sizes) - 1)]


# (T, B, sizes, bidirectional, with initial states): B*H >= 2048 makes a team of two. With
# B >= 8 the members take rows 0-4 / 5-8 (B = 9: a 4-row tile and single rows); with B < 8 they
# split the units, and an odd number of unit chunks (H = 301: 19 chunks of 16, or 38 of 8) makes
# them split the middle chunk's rows.
CASES = {
    "team-odd": (4, 9, [11, 229], False, True),
    "team-units": (4, 7, [11, 301], False, True),
    "tiny": (3, 2, [3, 5], False, False),
    "stacked-bidirectional": (5, 7, [6, 301, 13], True, False),
    "activity": (20, 32, [32, 200], False, False),
}


def _case_inputs(case: str, seed: int):
    """(rng, layers, directions, weights, x, initial h or None) of a case; the weights use seed + 1,
    and the rng goes on drawing after x and h0."""
    T, B, sizes, bidir, with_states = CASES[case]
    r = rng(seed)
    layers = _lstm(sizes, bidir)
    D = 2 if bidir else 1
    w = make_weights(layers, bidir, seed=seed + 1, scale=0.3)
    x = r.standard_normal((T, B, sizes[0])).astype(np.float32)
    h0 = [(r.standard_normal((B, s[2])) * 0.5).astype(np.float32) for s in layers for _ in range(D)] \
        if with_states else None
    return r, layers, D, w, x, h0


@pytest.mark.parametrize("case", list(CASES))
def test_fused_lstm_forward_and_gradients(case, threads):
    T, B, sizes, bidir, with_states = CASES[case]
    r, layers, D, w, x, h0 = _case_inputs(case, 21)
    n = len(layers) * D
    c0 = [(r.standard_normal((B, s[2])) * 0.5).astype(np.float32) for s in layers for _ in range(D)] \
        if with_states else None
    full = np.full(B, T, np.int32)  # every sequence at full length: same math, general path

    y, hl, cl, st = rnn_forward(x, w, layers, bidir, h0, c0, training=True)
    yr, hr, cr = ref_rnn(layers, bidir, x, w, h0, c0)
    assert_close(y, yr, atol=1e-5, rtol=1e-4, what="y")
    for k in range(n):
        assert_close(hl[k], hr[k], atol=1e-5, rtol=1e-4, what=f"h_last[{k}]")
        assert_close(cl[k], cr[k], atol=1e-5, rtol=1e-4, what=f"c_last[{k}]")
    yg, _, _, stg = rnn_forward(x, w, layers, bidir, h0, c0, full, training=True)
    assert_close(y, yg, atol=1e-5, rtol=1e-4, what="y vs general path")

    dy = r.standard_normal(y.shape).astype(np.float32)
    gh = [r.standard_normal((B, s[2])).astype(np.float32) for s in layers for _ in range(D)]
    gc = [r.standard_normal((B, s[2])).astype(np.float32) for s in layers for _ in range(D)]
    for dyk in (dy, None):  # with output gradients, and final states only (the classifier's case)
        got = rnn_backward(x, dyk, w, layers, bidir, st, gh, gc)
        want = rnn_backward(x, dyk, w, layers, bidir, stg, gh, gc)
        names = ["dx", "dw", "dh0", "dc0"]
        for name, a, b in zip(names, got, want):
            for k, (ak, bk) in enumerate(zip(a, b) if isinstance(a, list) else [(a, b)]):
                scale = float(np.max(np.abs(bk))) + 1e-6
                assert_close(ak, bk, atol=2e-5 * scale, rtol=1e-4, what=f"{name}[{k}] (dy {dyk is not None})")


def test_fused_lstm_gradients_match_finite_differences(threads):
    # Independent of the general path: float64 reference loss, central differences.
    T, B, I, H = 3, 9, 5, 233
    r = rng(23)
    layers = _lstm([I, H])
    w = make_weights(layers, False, seed=24, scale=0.3)
    x = r.standard_normal((T, B, I)).astype(np.float32)
    dy = r.standard_normal((T, B, H)).astype(np.float32)
    _, _, _, st = rnn_forward(x, w, layers, training=True)
    dx, dw, _, _ = rnn_backward(x, dy, w, layers, False, st)

    def loss(xx, ww):
        return float(np.sum(ref_rnn(layers, False, xx, ww)[0] * dy))

    eps = 1e-4
    x64, w64 = x.astype(np.float64), [a.astype(np.float64) for a in w]
    for arr, grad, name in [(x64, dx, "x")] + [(w64[k], dw[k], f"w{k}") for k in range(3)]:
        flat = arr.reshape(-1)
        for i in r.choice(flat.size, size=6, replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            plus = loss(x64, w64)
            flat[i] = orig - eps
            minus = loss(x64, w64)
            flat[i] = orig
            num = (plus - minus) / (2 * eps)
            got = float(grad.reshape(-1)[i])
            assert abs(got - num) <= 1e-3 + 1e-3 * abs(num), f"{name}[{i}]: kernel {got} vs fd {num}"


@pytest.mark.parametrize("B,H", [(13, 229), (7, 301)], ids=["rows", "units"])
def test_fused_lstm_same_with_one_and_two_threads(B, H):
    # The team splits rows or units, never a sum: one and two threads give the same bits.
    T, I = 6, 9
    layers = _lstm([I, H])
    w = make_weights(layers, False, seed=25, scale=0.3)
    x = rng(26).standard_normal((T, B, I)).astype(np.float32)
    dy = rng(27).standard_normal((T, B, H)).astype(np.float32)
    out = []
    before = mnn.num_threads()
    try:
        for n in (1, 2):
            mnn.set_num_threads(n)
            y, hl, cl, st = rnn_forward(x, w, layers, training=True)
            dx, dw, dh0, dc0 = rnn_backward(x, dy, w, layers, False, st)
            out.append((y, hl[0], cl[0], dx, dh0[0], dc0[0]) + tuple(dw))
    finally:
        mnn.set_num_threads(before)
    for a, b in zip(*out):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("case", ["team-odd", "team-units", "stacked-bidirectional", "activity"])
def test_backward_without_initial_state_gradients(case, threads):
    # initial_state_gradients=False skips the first step's recurrent product: dh0 / dc0 come back
    # None and every other gradient has the same bits as the full call.
    T, B, sizes, bidir, with_states = CASES[case]
    r, layers, D, w, x, h0 = _case_inputs(case, 31)
    _, _, _, st = rnn_forward(x, w, layers, bidir, h0, None, training=True)
    gh = [r.standard_normal((B, s[2])).astype(np.float32) for s in layers for _ in range(D)]
    dy = r.standard_normal((T, B, sizes[-1] * D)).astype(np.float32)
    for dyk in (dy, None):
        dx, dw, dh0, dc0 = rnn_backward(x, dyk, w, layers, bidir, st, gh)
        dx2, dw2, dh02, dc02 = rnn_backward(x, dyk, w, layers, bidir, st, gh, initial_state_gradients=False)
        assert all(a is None for a in dh02 + dc02) and len(dh02) == len(dh0)
        assert np.array_equal(dx, dx2)
        for a, b in zip(dw, dw2):
            assert np.array_equal(a, b)


def test_training_layer_skips_initial_state_gradients_only_when_not_asked():
    # RNNMatrixTrainingLayer asks for dL/d(initial state) only when initial_state_gradients is given.
    from metalnn.rnn import LSTMDescriptor, RecurrentState, RNNMatrixTrainingLayer

    T, B, I, H = 5, 11, 7, 37
    layer = RNNMatrixTrainingLayer(LSTMDescriptor(I, H))
    w = layer.create_weight_matrices(seed=3)
    x = rng(33).standard_normal((T, B, I)).astype(np.float32)
    dh = rng(34).standard_normal((B, H)).astype(np.float32)
    out = []
    for want in (True, False):
        states, grads = [], layer.create_weight_gradient_matrices(w)
        layer.encode_forward_sequence(x, None, states, w)
        init = [] if want else None
        dx = layer.encode_gradient_sequence(x, None, None, grads, states, w,
                                            final_state_gradients=[RecurrentState(dh)], initial_state_gradients=init)
        out.append((dx, grads, init))
    (dx1, g1, init1), (dx2, g2, _) = out
    assert len(init1) == 1 and init1[0].h.shape == (B, H) and np.any(init1[0].h != 0)
    assert np.array_equal(dx1, dx2)
    for a, b in zip(g1, g2):
        assert np.array_equal(a, b)


def test_backward_into_given_weight_gradient_arrays():
    # dweights_out: the kernel writes the caller's arrays (returned as dweights), same bits as
    # the allocating call; wrong shapes or read-only arrays are refused before anything is written.
    T, B, sizes = 4, 9, [11, 229]
    layers = _lstm(sizes)
    w = make_weights(layers, False, seed=35, scale=0.3)
    x = rng(36).standard_normal((T, B, sizes[0])).astype(np.float32)
    dy = rng(37).standard_normal((T, B, sizes[1])).astype(np.float32)
    _, _, _, st = rnn_forward(x, w, layers, training=True)
    dx, dw, _, _ = rnn_backward(x, dy, w, layers, False, st)
    out = [np.full_like(a, np.nan) for a in w]
    dx2, dw2, _, _ = rnn_backward(x, dy, w, layers, False, st, dweights_out=out)
    assert np.array_equal(dx, dx2)
    for a, b, o in zip(dw, dw2, out):
        assert b is o and np.array_equal(a, o)
    bad = [np.zeros_like(a) for a in w]
    bad[1] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="rnn_backward"):
        rnn_backward(x, dy, w, layers, False, st, dweights_out=bad)
    ro = [np.zeros_like(a) for a in w]
    ro[0].setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        rnn_backward(x, dy, w, layers, False, st, dweights_out=ro)
    assert not np.any(bad[0]) and not np.any(ro[1])
