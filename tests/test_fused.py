"""Fused convolution / fully connected + bias + neuron (one kernel, f in the epilogue):
fused results against the unfused ops (neuron_forward of the layer's output) and against
a numpy reference, the pre-activation z, float16 and half accumulation, the gradient
through z, NaN propagation, and bad neuron arguments."""

import math

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, finite_difference, raises_named, randn, rng

ops = mnn.ops

_erf = np.vectorize(math.erf)

# name, (a, b) passed (None: the defaults), numpy f(z, a, b) with the defaults filled in.
NEURONS = {
    "relu": ((None, None), lambda z, a, b: np.where(z >= 0, z, 0.0)),
    "leaky_relu": ((0.1, None), lambda z, a, b: np.where(z >= 0, z, a * z)),
    "tanh": ((1.5, 0.7), lambda z, a, b: a * np.tanh(b * z)),
    "sigmoid": ((None, None), lambda z, a, b: 1 / (1 + np.exp(-z))),
    "gelu": ((None, None), lambda z, a, b: 0.5 * z * (1 + _erf(z / np.sqrt(2)))),
    "relun": ((0.05, 1.5), lambda z, a, b: np.minimum(np.where(z >= 0, z, a * z), b)),
}
DEFAULTS = {"relu": (0.0, 0.0), "leaky_relu": (0.01, 0.0), "tanh": (1.0, 1.0),
            "sigmoid": (0.0, 0.0), "gelu": (0.0, 0.0), "relun": (0.0, 6.0)}


def neuron_ref(name, z):
    (a, b), f = NEURONS[name]
    da, db = DEFAULTS[name]
    return f(np.asarray(z, np.float64), da if a is None else a, db if b is None else b)


def _kw(name):
    (a, b), _ = NEURONS[name]
    return dict(neuron=name, neuron_a=a, neuron_b=b)


def _neuron(y, name):
    (a, b), _ = NEURONS[name]
    return ops.neuron_forward(y, name, a, b)


def _check_against_unfused(y, z, plain, name, dtype):
    """z is the unfused layer output to the bit (same products, same rounding); y is the
    unfused neuron of it: to the bit in float32, an ulp or so apart in float16, where the
    fused op rounds once (half(f(z))) and the unfused one twice (half(f(half(z))))."""
    assert y.dtype == z.dtype == dtype and y.shape == z.shape == plain.shape
    np.testing.assert_array_equal(z, plain)
    unfused = _neuron(plain, name)
    if dtype == np.float32:
        np.testing.assert_array_equal(y, unfused)
    else:
        assert_close(y, unfused, dtype, atol=2e-3, rtol=2e-3)
    assert not np.array_equal(y, z)  # the neuron really ran


# (N, C, H, W, O, kH, kW, stride, padding, dilation, groups): odd sizes, strides, groups,
# asymmetric padding, a pointwise kernel, and the digit network's first layer.
CONV_CASES = [
    (2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1),
    (3, 4, 11, 6, 6, 3, 2, (2, 1), (1, 0, 2, 1), 1, 2),
    (1, 6, 5, 7, 9, 1, 1, 1, 0, 1, 3),
    (2, 5, 9, 8, 7, 3, 3, 2, 2, 2, 1),
    (3, 1, 28, 28, 32, 5, 5, 1, 2, 1, 1),
]


def _conv_inputs(case, dtype=np.float32, seed=0, bias=True):
    N, C, H, W, O, kH, kW, stride, padding, dilation, groups = case
    r = rng(seed)
    x = randn(r, N, C, H, W, dtype=dtype)
    w = randn(r, O, C // groups, kH, kW, dtype=dtype, scale=1 / np.sqrt(C // groups * kH * kW))
    b = randn(r, O, dtype=dtype, scale=0.5) if bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("name", list(NEURONS))
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_fused_equals_unfused(case, name, dtype):
    x, w, b, kw = _conv_inputs(CONV_CASES[case], dtype, seed=case, bias=case != 2)
    x0, w0 = x.copy(), w.copy()
    y, z = ops.conv2d_forward(x, w, b, **kw, **_kw(name), return_preactivation=True)
    _check_against_unfused(y, z, ops.conv2d_forward(x, w, b, **kw), name, dtype)
    assert_close(y, neuron_ref(name, z), dtype, atol=1e-3 if dtype == np.float16 else 1e-6)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def test_conv_fused_matches_numpy_reference():
    """Independent of the unfused ops: y = f(conv + bias) from plain numpy loops."""
    x, w, b, kw = _conv_inputs(CONV_CASES[1], seed=21)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    (sh, sw), (top, _, left, _), g = kw["stride"], kw["padding"], kw["groups"]
    y = ops.conv2d_forward(x, w, b, **kw, **_kw("leaky_relu"))
    z = np.zeros(y.shape)
    for n in range(N):
        for o in range(O):
            c0 = (o // (O // g)) * Cg
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    acc = float(b[o])
                    for c in range(Cg):
                        for a in range(kH):
                            for e in range(kW):
                                h, v = i * sh - top + a, j * sw - left + e
                                if 0 <= h < H and 0 <= v < W:
                                    acc += float(x[n, c0 + c, h, v]) * float(w[o, c, a, e])
                    z[n, o, i, j] = acc
    assert_close(y, neuron_ref("leaky_relu", z), atol=1e-5)


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu"])
def test_conv_half_accumulation_fused_equals_unfused_exactly(name):
    x, w, b, kw = _conv_inputs(CONV_CASES[1], np.float16, seed=3)
    y, z = ops.conv2d_forward(x, w, b, **kw, accumulation="half", **_kw(name),
                              return_preactivation=True)
    plain = ops.conv2d_forward(x, w, b, **kw, accumulation="half")
    # z is already half-valued, so f in float32 then one rounding is the unfused result
    np.testing.assert_array_equal(z, plain)
    np.testing.assert_array_equal(y, _neuron(plain, name))
    assert not np.array_equal(z, ops.conv2d_forward(x, w, b, **kw))  # half accumulation really ran


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_neuron_none_is_exactly_unfused(dtype):
    x, w, b, kw = _conv_inputs(CONV_CASES[3], dtype, seed=4)
    plain = ops.conv2d_forward(x, w, b, **kw)
    for neuron in (None, "none"):
        y, z = ops.conv2d_forward(x, w, b, **kw, neuron=neuron, return_preactivation=True)
        np.testing.assert_array_equal(y, plain)
        np.testing.assert_array_equal(z, plain)
    xf, wf, bf = randn(rng(5), 7, 13, dtype=dtype), randn(rng(6), 11, 13, dtype=dtype), None
    np.testing.assert_array_equal(ops.fully_connected_forward(xf, wf, bf, neuron="none"),
                                  ops.fully_connected_forward(xf, wf, bf))


# (x shape, weight shape): 2-D, 4-D with 2-D or 4-D weights, and products large enough to be
# split over the threads by rows (N >= O) and by features (N < O).
FC_CASES = [
    ((5, 13), (7, 13)),
    ((3, 2, 5, 3), (9, 2, 5, 3)),
    ((4, 3, 3, 5), (6, 45)),
    ((301, 171), (47, 171)),
    ((17, 3, 7, 7), (1024, 147)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("name", list(NEURONS))
@pytest.mark.parametrize("case", range(len(FC_CASES)))
def test_fully_connected_fused_equals_unfused(case, name, dtype):
    xs, ws = FC_CASES[case]
    r = rng(30 + case)
    x = randn(r, *xs, dtype=dtype)
    w = randn(r, *ws, dtype=dtype, scale=1 / np.sqrt(np.prod(ws[1:])))
    b = randn(r, ws[0], dtype=dtype, scale=0.5) if case != 1 else None
    y, z = ops.fully_connected_forward(x, w, b, **_kw(name), return_preactivation=True)
    assert y.shape == (xs[0], ws[0])
    _check_against_unfused(y, z, ops.fully_connected_forward(x, w, b), name, dtype)
    zr = x.reshape(xs[0], -1).astype(np.float64) @ w.reshape(ws[0], -1).astype(np.float64).T
    if b is not None:
        zr += b.astype(np.float64)
    tol = dict(atol=5e-3, rtol=5e-3) if dtype == np.float16 else dict(atol=1e-4, rtol=1e-5)
    assert_close(y, neuron_ref(name, zr), dtype, **tol)


@pytest.mark.parametrize("name", ["relun", "sigmoid"])
def test_fully_connected_half_accumulation_fused_equals_unfused_exactly(name):
    r = rng(40)
    x, w = randn(r, 6, 3, 4, 4, dtype=np.float16), randn(r, 37, 48, dtype=np.float16, scale=0.2)
    b = randn(r, 37, dtype=np.float16)
    y, z = ops.fully_connected_forward(x, w, b, accumulation="half", **_kw(name),
                                       return_preactivation=True)
    plain = ops.fully_connected_forward(x, w, b, accumulation="half")
    np.testing.assert_array_equal(z, plain)
    np.testing.assert_array_equal(y, _neuron(plain, name))


def test_fused_on_one_thread_and_many():
    x, w, b, kw = _conv_inputs(CONV_CASES[4], seed=7)
    xf, wf = randn(rng(8), 64, 3136), randn(rng(9), 256, 3136, scale=0.02)

    def both():
        return (ops.conv2d_forward(x, w, b, **kw, neuron="relu"),
                ops.fully_connected_forward(xf, wf, neuron="gelu"))

    threads = mnn.num_threads()
    try:
        mnn.set_num_threads(1)
        one = both()
    finally:
        mnn.set_num_threads(threads)
    many = both()
    for a, c in zip(one, many):
        assert_close(a, c, atol=1e-5)


def test_gradient_through_preactivation_matches_finite_differences():
    """dx = conv2d_backward_input(neuron_backward(dy, z)) is d(sum(y * dy))/dx of the fused op."""
    x, w, b, kw = _conv_inputs((1, 2, 5, 4, 3, 3, 2, 1, 1, 1, 1), seed=10)
    y, z = ops.conv2d_forward(x, w, b, **kw, **_kw("tanh"), return_preactivation=True)
    dy = randn(rng(11), *y.shape)
    dz = ops.neuron_backward(dy, z, "tanh", *NEURONS["tanh"][0])
    dx = ops.conv2d_backward_input(dz, w, x.shape, **kw)
    dw = ops.conv2d_backward_weight(dz, x, w.shape, **kw)

    def fused(xx, ww):
        xx, ww = xx.astype(np.float32), ww.astype(np.float32)
        return ops.conv2d_forward(xx, ww, b, **kw, **_kw("tanh"))

    assert_close(dx, finite_difference(lambda v: fused(v, w), x, dy), atol=2e-2, rtol=1e-2)
    assert_close(dw, finite_difference(lambda v: fused(x, v), w, dy), atol=2e-2, rtol=1e-2)

    xf, wf, bf = randn(rng(12), 3, 5), randn(rng(13), 4, 5), randn(rng(14), 4)
    yf, zf = ops.fully_connected_forward(xf, wf, bf, neuron="sigmoid", return_preactivation=True)
    dyf = randn(rng(15), *yf.shape)
    dxf = ops.fully_connected_backward_input(ops.neuron_backward(dyf, zf, "sigmoid"), wf, xf.shape)
    num = finite_difference(
        lambda v: ops.fully_connected_forward(v.astype(np.float32), wf, bf, neuron="sigmoid"),
        xf, dyf)
    assert_close(dxf, num, atol=1e-2, rtol=1e-2)


def test_nan_propagates_through_the_epilogue():
    x, w, b, kw = _conv_inputs(CONV_CASES[0], seed=16)
    x[1, 0, 3, 4] = np.nan
    for name in ("relu", "relun", "sigmoid"):
        y, z = ops.conv2d_forward(x, w, b, **kw, **_kw(name), return_preactivation=True)
        assert np.isnan(z).any() and not np.isnan(z).all()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(z))
    xf = randn(rng(17), 4, 6)
    xf[2, 1] = np.nan
    yf = ops.fully_connected_forward(xf, randn(rng(18), 5, 6), neuron="relu")
    np.testing.assert_array_equal(np.isnan(yf), np.arange(4)[:, None].repeat(5, 1) == 2)


def test_tensor_in_tensor_out():
    x, w, b, kw = _conv_inputs(CONV_CASES[0], seed=19)
    y, z = ops.conv2d_forward(mnn.tensor(x), mnn.tensor(w), mnn.tensor(b), **kw, neuron="relu",
                              return_preactivation=True)
    assert isinstance(y, mnn.Tensor) and isinstance(z, mnn.Tensor)
    np.testing.assert_array_equal(y.numpy(), np.maximum(z.numpy(), 0))
    yf = ops.fully_connected_forward(mnn.tensor(x), mnn.tensor(np.ones((3, 3 * 7 * 9), np.float32)),
                                     neuron="relu")
    assert isinstance(yf, mnn.Tensor) and yf.shape == (2, 3)


def test_bad_neuron_raises_and_leaves_arrays_untouched():
    x, w, b, kw = _conv_inputs(CONV_CASES[0], seed=20)
    xf, wf = randn(rng(21), 3, 5), randn(rng(22), 4, 5)
    arrays = (x, w, b, xf, wf)
    before = [a.copy() for a in arrays]
    conv = lambda **k: ops.conv2d_forward(x, w, b, **kw, **k)  # noqa: E731
    fc = lambda **k: ops.fully_connected_forward(xf, wf, **k)  # noqa: E731
    for fn, op in ((conv, "conv2d_forward"), (fc, "fully_connected_forward")):
        with raises_named(ValueError, op, "neuron"):
            fn(neuron="relux")
        with raises_named(ValueError, op, "neuron"):
            fn(neuron="")
        with raises_named(ValueError, op, "neuron_a"):
            fn(neuron_a=0.5)  # coefficients without a neuron
        with raises_named(ValueError, op, "neuron_a"):
            fn(neuron="leaky_relu", neuron_a=float("nan"))
        with raises_named(ValueError, op, "neuron_b"):
            fn(neuron="relun", neuron_b=float("inf"))
        with raises_named(TypeError, op, "neuron"):
            fn(neuron=1)
        # other bad arguments still raise first with the fused options set
        with raises_named(ValueError, op, "accumulation"):
            fn(neuron="relu", accumulation="half", return_preactivation=True)
    with raises_named(ValueError, "conv2d_forward", "x"):
        ops.conv2d_forward(x[:, :2], w, b, **kw, neuron="relu", return_preactivation=True)
    for a, a0 in zip(arrays, before):
        np.testing.assert_array_equal(a, a0)
