"""Property-based tests over the public ops (issue 9): random shapes, dtypes, strides,
paddings, dilations, groups, probabilities and hyperparameters. Valid input matches a
numpy reference written here from the math; invalid input raises ValueError/TypeError
naming the op; nothing crashes or hangs."""

from __future__ import annotations

import numpy as np
from fuzz_support import FUZZ, expect_error, valid
from hypothesis import assume, given
from hypothesis import strategies as st

import metalnn as mnn

DTYPES = st.sampled_from([np.float32, np.float16])
TOL = {np.float32: 2e-4, np.float16: 2e-2}


def _rand(seed, shape, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _close(got, ref, dtype):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    tol = TOL[dtype] * max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(got, ref, atol=tol, rtol=TOL[dtype])


# -- references from the math ------------------------------------------------------------
def ref_conv2d(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dil
    pt, pb, pl, pr = pad
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def ref_pool(x, k, s, pad, kind, count_include_pad=True):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = k, s, pad
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            win = x[:, :, max(h0, 0):min(h0 + kh, h), max(w0, 0):min(w0 + kw, w)].astype(np.float64)
            if kind == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                d = kh * kw if count_include_pad else win.shape[2] * win.shape[3]
                y[:, :, i, j] = win.sum(axis=(2, 3)) / d
    return y


NEURONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "absolute": np.abs,
    "linear": lambda x: x,
    "elu": lambda x: np.where(x >= 0, x, np.expm1(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
}


# -- convolution ----------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    n = draw(st.integers(1, 3))
    return dict(n=n, c=cg * groups, o=og * groups, h=h, w=w, k=(kh, kw), stride=stride, dil=dil, pad=pad,
                groups=groups, bias=draw(st.booleans()), dtype=draw(DTYPES), seed=draw(st.integers(0, 2**16)))


@FUZZ
@given(conv_cases())
def test_conv2d_forward_and_gradients(case):
    kh, kw = case["k"]
    pt, pb, pl, pr = case["pad"]
    eff_h, eff_w = case["dil"][0] * (kh - 1) + 1, case["dil"][1] * (kw - 1) + 1
    dt = case["dtype"]
    x = _rand(case["seed"], (case["n"], case["c"], case["h"], case["w"]), dt)
    w = _rand(case["seed"] + 1, (case["o"], case["c"] // case["groups"], kh, kw), dt, 0.5)
    b = _rand(case["seed"] + 2, (case["o"],), dt) if case["bias"] else None
    geo = dict(stride=case["stride"], padding=[pt, pb, pl, pr], dilation=case["dil"], groups=case["groups"])
    if case["h"] + pt + pb < eff_h or case["w"] + pl + pr < eff_w:
        expect_error("conv2d_forward", mnn.ops.conv2d_forward, x, w, b, **geo)
        return
    valid("conv2d_forward")
    y = mnn.ops.conv2d_forward(x, w, b, **geo)
    ref = ref_conv2d(x.astype(np.float64), w.astype(np.float64), b, case["stride"], case["pad"], case["dil"],
                     case["groups"])
    assert y.shape == ref.shape and y.dtype == dt
    _close(y, ref, dt)
    # Gradients through the adjoint identity <conv(x), dy> = <x, dx(dy)> = <w, dw(dy, x)>.
    dy = _rand(case["seed"] + 3, y.shape, dt)
    dx = mnn.ops.conv2d_backward_input(dy, w, x.shape, **geo)
    dw = mnn.ops.conv2d_backward_weight(dy, x, w.shape, **geo)
    valid("conv2d_backward_input")
    valid("conv2d_backward_weight")
    lhs = np.sum(ref_conv2d(x.astype(np.float64), w.astype(np.float64), None, case["stride"], case["pad"],
                            case["dil"], case["groups"]) * dy)
    scale = np.sum(np.abs(x.astype(np.float64))) * np.max(np.abs(w), initial=1) * np.max(np.abs(dy), initial=1)
    tol = TOL[dt] * max(1.0, scale)
    assert abs(np.sum(x.astype(np.float64) * dx) - lhs) <= tol
    assert abs(np.sum(w.astype(np.float64) * dw) - lhs) <= tol


@FUZZ
@given(st.integers(0, 9), st.integers(0, 2**16))
def test_conv2d_invalid_arguments(which, seed):
    x, w = _rand(seed, (2, 4, 6, 6)), _rand(seed + 1, (6, 2, 3, 3))
    op = "conv2d_forward"
    calls = [
        lambda: mnn.ops.conv2d_forward(x, w, groups=3),                       # 4 channels, 3 groups
        lambda: mnn.ops.conv2d_forward(x, w, groups=1),                       # weight has 2 in-channels
        lambda: mnn.ops.conv2d_forward(x, w, stride=0, groups=2),
        lambda: mnn.ops.conv2d_forward(x, w, padding=-1, groups=2),
        lambda: mnn.ops.conv2d_forward(x, w, dilation=(1, 0), groups=2),
        lambda: mnn.ops.conv2d_forward(x[:, :, ::2], w, groups=2),            # not contiguous
        lambda: mnn.ops.conv2d_forward(x.astype(np.float64), w, groups=2),    # dtype
        lambda: mnn.ops.conv2d_forward(x[0], w, groups=2),                    # rank
        lambda: mnn.ops.conv2d_forward(x, w, np.zeros(5, np.float32), groups=2),  # bias size
        lambda: mnn.ops.conv2d_forward(x, w.astype(np.float16), groups=2),    # mixed dtypes
    ]
    expect_error(op, calls[which])


# -- fully connected ------------------------------------------------------------------
@FUZZ
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 9), st.booleans(), DTYPES, st.integers(0, 2**16))
def test_fully_connected(n, f, o, bias, dt, seed):
    x, w = _rand(seed, (n, f), dt), _rand(seed + 1, (o, f), dt, 0.3)
    b = _rand(seed + 2, (o,), dt) if bias else None
    y = mnn.ops.fully_connected_forward(x, w, b)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b.astype(np.float64))
    _close(y, ref, dt)
    dy = _rand(seed + 3, (n, o), dt)
    _close(mnn.ops.fully_connected_backward_input(dy, w, x.shape), dy.astype(np.float64) @ w, dt)
    _close(mnn.ops.fully_connected_backward_weight(dy, x, w.shape), dy.astype(np.float64).T @ x, dt)
    valid("fully_connected_forward")
    bad = _rand(seed, (n, f + 1), dt)
    expect_error("fully_connected_forward", mnn.ops.fully_connected_forward, bad, w, b)


# -- pooling ------------------------------------------------------------------------------
@FUZZ
@given(st.tuples(st.integers(1, 4), st.integers(1, 4)), st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.tuples(*[st.integers(0, 2)] * 4), st.integers(1, 9), st.integers(1, 9), st.booleans(), DTYPES,
       st.integers(0, 2**16))
def test_pooling(k, s, pad, h, w, include_pad, dt, seed):
    x = _rand(seed, (2, 3, h, w), dt)
    pads_ok = pad[0] < k[0] and pad[1] < k[0] and pad[2] < k[1] and pad[3] < k[1]
    fits = h + pad[0] + pad[1] >= k[0] and w + pad[2] + pad[3] >= k[1]
    if not fits:
        expect_error("max_pool2d_forward", mnn.ops.max_pool2d_forward, x, k, s, list(pad))
        return
    assume(pads_ok)  # the padding-vs-window rule is checked in test_pooling.py
    y, state = mnn.ops.max_pool2d_forward(x, k, s, list(pad))
    _close(y, ref_pool(x, k, s, pad, "max"), dt)
    ya = mnn.ops.avg_pool2d_forward(x, k, s, list(pad), include_pad)
    _close(ya, ref_pool(x, k, s, pad, "avg", include_pad), dt)
    valid("max_pool2d_forward")
    valid("avg_pool2d_forward")
    # Each max-pool gradient goes to one input element: the sums agree.
    dy = _rand(seed + 1, y.shape, dt)
    dx = mnn.ops.max_pool2d_backward(dy, state)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.sum(dx, dtype=np.float64), np.sum(dy, dtype=np.float64),
                               atol=TOL[dt] * max(1, dy.size))


# -- neurons, softmax, dropout -------------------------------------------------------------
@FUZZ
@given(st.sampled_from(sorted(NEURONS)), st.lists(st.integers(1, 7), min_size=1, max_size=4), DTYPES,
       st.integers(0, 2**16))
def test_neurons(name, shape, dt, seed):
    x = _rand(seed, tuple(shape), dt, 2.0)
    y = mnn.ops.neuron_forward(x, name)
    _close(y, NEURONS[name](x.astype(np.float64)), dt)
    valid("neuron_forward")
    expect_error("neuron_forward", mnn.ops.neuron_forward, x, name + "_typo")


@FUZZ
@given(st.integers(1, 6), st.integers(1, 33), DTYPES, st.booleans(), st.integers(0, 2**16))
def test_softmax(n, c, dt, log, seed):
    x = _rand(seed, (n, c), dt, 3.0)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    got = mnn.ops.log_softmax_forward(x) if log else mnn.ops.softmax_forward(x)
    _close(got, np.log(ref) if log else ref, dt)
    valid("softmax_forward")


@FUZZ
@given(st.one_of(st.floats(0.05, 1.0), st.floats(-1.0, 2.0), st.just(float("nan"))), st.integers(1, 500), DTYPES,
       st.integers(0, 2**32))
def test_dropout(keep, size, dt, seed):
    x = _rand(seed % 1000, (size,), dt) + 3  # nonzero
    if not (0 < keep <= 1):  # NaN fails this too
        expect_error("dropout_forward", mnn.ops.dropout_forward, x, keep, seed)
        return
    y, _ = mnn.ops.dropout_forward(x, keep, seed)
    kept = y != 0
    _close(y[kept], x[kept].astype(np.float64) / keep, dt)
    valid("dropout_forward")


# -- softmax cross-entropy ------------------------------------------------------------------
@FUZZ
@given(st.integers(1, 6), st.integers(1, 12), st.sampled_from(["mean", "sum", "none"]),
       st.floats(0, 0.5), st.integers(0, 2**16), st.booleans())
def test_softmax_cross_entropy(n, c, reduction, smoothing, seed, bad_label):
    r = np.random.default_rng(seed)
    logits = _rand(seed, (n, c), scale=2.0)
    labels = r.integers(0, c, n).astype(np.int32)
    if bad_label:
        labels[r.integers(0, n)] = c + r.integers(0, 3)
        expect_error("softmax_cross_entropy_forward", mnn.ops.softmax_cross_entropy_forward, logits, labels,
                     None, reduction, smoothing)
        return
    loss, _ = mnn.ops.softmax_cross_entropy_forward(logits, labels, None, reduction, smoothing)
    z = logits.astype(np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    target = np.full((n, c), smoothing / c)
    target[np.arange(n), labels] += 1 - smoothing
    per = -(target * logp).sum(axis=1)
    ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    _close(np.asarray(loss).reshape(np.shape(ref)), ref, np.float32)
    valid("softmax_cross_entropy_forward")


# -- optimizers ---------------------------------------------------------------------------------
@FUZZ
@given(st.integers(1, 50), st.floats(0, 1), st.floats(0, 0.99), st.booleans(), st.integers(0, 2**16))
def test_sgd_step(size, lr, momentum, nesterov, seed):
    w, g, v = _rand(seed, (size,)), _rand(seed + 1, (size,)), _rand(seed + 2, (size,))
    w64, g64, v64 = w.astype(np.float64), g.astype(np.float64), v.astype(np.float64)
    mnn.ops.sgd_step(w, g, v, learning_rate=lr, momentum=momentum, nesterov=nesterov)
    v_new = momentum * v64 - lr * g64
    w_new = w64 + (momentum * v_new - lr * g64 if nesterov else v_new)
    _close(v, v_new, np.float32)
    _close(w, w_new, np.float32)
    valid("sgd_step")


@FUZZ
@given(st.integers(1, 50), st.floats(1e-5, 0.1), st.floats(0, 0.99), st.floats(0.5, 0.9999), st.integers(1, 50),
       st.integers(0, 2**16))
def test_adam_step(size, lr, beta1, beta2, t, seed):
    w, g = _rand(seed, (size,)), _rand(seed + 1, (size,))
    m, v = _rand(seed + 2, (size,), scale=0.1), np.abs(_rand(seed + 3, (size,), scale=0.1))
    w64, g64, m64, v64 = (a.astype(np.float64) for a in (w, g, m, v))
    mnn.ops.adam_step(w, g, m, v, step=t, learning_rate=lr, beta1=beta1, beta2=beta2, epsilon=1e-8)
    m_new = beta1 * m64 + (1 - beta1) * g64
    v_new = beta2 * v64 + (1 - beta2) * g64 * g64
    w_new = w64 - lr * (m_new / (1 - beta1 ** t)) / (np.sqrt(v_new / (1 - beta2 ** t)) + 1e-8)
    _close(m, m_new, np.float32)
    _close(v, v_new, np.float32)
    np.testing.assert_allclose(w, w_new, atol=1e-4 * max(1.0, lr * 100), rtol=1e-4)
    valid("adam_step")


@FUZZ
@given(st.sampled_from(["learning_rate", "momentum", "weight_decay"]),
       st.one_of(st.floats(-5, -1e-6), st.just(float("nan")), st.just(float("inf"))), st.integers(0, 2**16))
def test_optimizer_invalid_hyperparameters_leave_weights_untouched(name, value, seed):
    w, g, v = _rand(seed, (7,)), _rand(seed + 1, (7,)), _rand(seed + 2, (7,))
    before = (w.copy(), v.copy())
    expect_error("sgd_step", mnn.ops.sgd_step, w, g, v, **{"momentum": 0.5, name: value})
    assert np.array_equal(w, before[0]) and np.array_equal(v, before[1])
