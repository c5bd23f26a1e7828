"""Neurons: forward against numpy, gradient against finite differences and the
derivative written out, float16, domain errors, bad input, NaN propagation; PReLU with
per-channel slopes (forward, input and slope gradients); the new types in a fused layer
epilogue."""

import math

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, finite_difference, raises_named, randn, rng

_erf = np.vectorize(math.erf)


def _base(c):
    return math.e if c == -1 else c


# Reference f(x) in float64 with the MPS default coefficients the kernels use.
REF = {
    "none": (lambda x, a, b, c: x, {}),
    "relu": (lambda x, a, b, c: np.where(x >= 0, x, a * x), {"a": 0.0}),
    "leaky_relu": (lambda x, a, b, c: np.where(x >= 0, x, a * x), {"a": 0.01}),
    "sigmoid": (lambda x, a, b, c: 1 / (1 + np.exp(-x)), {}),
    "hard_sigmoid": (lambda x, a, b, c: np.clip(a * x + b, 0, 1), {"a": 0.2, "b": 0.5}),
    "tanh": (lambda x, a, b, c: a * np.tanh(b * x), {"a": 1.0, "b": 1.0}),
    "linear": (lambda x, a, b, c: a * x + b, {"a": 1.0, "b": 0.0}),
    "absolute": (lambda x, a, b, c: np.abs(x), {}),
    "softplus": (lambda x, a, b, c: a * np.log1p(np.exp(b * x)), {"a": 1.0, "b": 1.0}),
    "elu": (lambda x, a, b, c: np.where(x >= 0, x, a * np.expm1(x)), {"a": 1.0}),
    "relun": (lambda x, a, b, c: np.minimum(np.where(x >= 0, x, a * x), b), {"a": 0.0, "b": 6.0}),
    "gelu": (lambda x, a, b, c: 0.5 * x * (1 + _erf(x / math.sqrt(2))), {}),
    "softsign": (lambda x, a, b, c: x / (1 + np.abs(x)), {}),
    "power": (lambda x, a, b, c: np.power(a * x + b, c), {"a": 1.0, "b": 0.0, "c": 2.0}),
    "exponential": (lambda x, a, b, c: np.power(_base(c), a * x + b), {"a": 1.0, "b": 0.0, "c": -1.0}),
    "logarithm": (lambda x, a, b, c: np.log(a * x + b) / math.log(_base(c)), {"a": 1.0, "b": 0.0, "c": -1.0}),
    "silu": (lambda x, a, b, c: x * (1 / (1 + np.exp(-x))), {}),
    "mish": (lambda x, a, b, c: x * np.tanh(np.log1p(np.exp(x))), {}),
    "selu": (lambda x, a, b, c: b * np.where(x >= 0, x, a * np.expm1(x)),
             {"a": 1.6732632423543772, "b": 1.0507009873554805}),
}
NEW = ("softsign", "power", "exponential", "logarithm", "silu", "mish", "selu")
# Non-default coefficients, so tests also exercise a, b, c.
CUSTOM = {"leaky_relu": {"a": 0.3}, "hard_sigmoid": {"a": 0.4, "b": 0.3}, "tanh": {"a": 1.7, "b": 0.6},
          "linear": {"a": -2.5, "b": 0.75}, "softplus": {"a": 0.5, "b": 2.0}, "elu": {"a": 0.8},
          "relun": {"a": 0.1, "b": 1.5}, "power": {"a": 0.5, "b": 1.0, "c": 1.5},
          "exponential": {"a": 0.7, "b": -0.5, "c": 2.5}, "logarithm": {"a": 1.5, "b": 2.0, "c": 10.0},
          "selu": {"a": 1.2, "b": 0.9}}
KINKS = {"relu": [0.0], "leaky_relu": [0.0], "absolute": [0.0], "elu": [0.0], "relun": [0.0, 1.5, 6.0],
         "hard_sigmoid": [-2.5, 2.5, -1.25, 1.75], "selu": [0.0]}
# Types defined only for a*x + b > 0 (power: with a non-integer c).
DOMAIN = ("logarithm", "power")


def _coeffs(name, custom):
    _, defaults = REF[name]
    c = {"a": 0.0, "b": 0.0, "c": 0.0}
    c.update(defaults)
    if custom:
        c.update(CUSTOM.get(name, {}))
    return c


def _ref(name, x, co):
    with np.errstate(all="ignore"):
        return REF[name][0](np.asarray(x, np.float64), co["a"], co["b"], co["c"])


def _input(name, shape, seed, dtype=np.float32, co=None):
    x = randn(rng(seed), *shape, scale=2.0).astype(np.float64)
    # Keep finite differences away from kinks ...
    for k in KINKS.get(name, []):
        x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
    # ... and inside the domain, where it has one: z = a*x + b reflected to |z| + 0.5.
    if name in DOMAIN and co is not None and float(co["c"]) != round(float(co["c"])) or name == "logarithm":
        a, b = co["a"], co["b"]
        z = a * x + b
        x = (np.abs(z) + 0.5 - b) / a
    return x.astype(dtype)


@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", list(REF))
def test_forward_matches_numpy(name, custom):
    co = _coeffs(name, custom)
    x = _input(name, (3, 5, 7, 9), seed=1, co=co)
    y = mnn.ops.neuron_forward(x, name, **(CUSTOM.get(name, {}) if custom else {}))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, _ref(name, x, co), atol=1e-6, rtol=2e-6, what=name)


@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", list(REF))
def test_backward_matches_finite_differences(name, custom):
    co = _coeffs(name, custom)
    kw = CUSTOM.get(name, {}) if custom else {}
    x = _input(name, (2, 3, 5), seed=2, co=co)
    dy = randn(rng(3), *x.shape)
    dx = mnn.ops.neuron_backward(dy, x, name, **kw)
    num = finite_difference(lambda v: _ref(name, v, co), x, dy, eps=1e-4)
    assert_close(dx, num, atol=1e-4, rtol=1e-4, what=name)
    # and the kernel's own forward, differentiated numerically in float32
    num32 = finite_difference(lambda v: mnn.ops.neuron_forward(v.astype(np.float32), name, **kw), x, dy,
                              eps=1e-2)
    assert_close(dx, num32, atol=5e-3, rtol=5e-3, what=name + " (kernel forward)")


# The derivatives of the new types written out (the docstring's formulas), in float64.
DERIV = {
    "softsign": lambda x, a, b, c: 1 / (1 + np.abs(x)) ** 2,
    "power": lambda x, a, b, c: c * a * np.power(a * x + b, c - 1),
    "exponential": lambda x, a, b, c: a * math.log(_base(c)) * np.power(_base(c), a * x + b),
    "logarithm": lambda x, a, b, c: a / ((a * x + b) * math.log(_base(c))),
    "silu": lambda x, a, b, c: (s := 1 / (1 + np.exp(-x))) * (1 + x * (1 - s)),
    "mish": lambda x, a, b, c: (t := np.tanh(np.log1p(np.exp(x)))) + x / (1 + np.exp(-x)) * (1 - t * t),
    "selu": lambda x, a, b, c: b * np.where(x >= 0, 1.0, a * np.exp(x)),
}


@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", NEW)
def test_new_types_backward_matches_derivative(name, custom):
    co = _coeffs(name, custom)
    x = _input(name, (4, 9, 11), seed=8, co=co)
    dy = randn(rng(9), *x.shape)
    dx = mnn.ops.neuron_backward(dy, x, name, **(CUSTOM.get(name, {}) if custom else {}))
    ref = dy.astype(np.float64) * DERIV[name](x.astype(np.float64), co["a"], co["b"], co["c"])
    assert_close(dx, ref, atol=1e-6, rtol=1e-5, what=name)


@pytest.mark.parametrize("name", list(REF))
def test_float16_matches_float32(name):
    co = _coeffs(name, False)
    x = _input(name, (2, 3, 11, 13), seed=4, dtype=np.float16, co=co)
    dy = randn(rng(5), *x.shape, dtype=np.float16)
    y16 = mnn.ops.neuron_forward(x, name)
    dx16 = mnn.ops.neuron_backward(dy, x, name)
    assert y16.dtype == np.float16 and dx16.dtype == np.float16
    y32 = mnn.ops.neuron_forward(x.astype(np.float32), name)
    dx32 = mnn.ops.neuron_backward(dy.astype(np.float32), x.astype(np.float32), name)
    # computed in float32, rounded once to half: within half an ulp of half
    assert_close(y16, y32.astype(np.float16), atol=1e-3, rtol=1e-3, what=name)
    assert_close(dx16, dx32.astype(np.float16), atol=1e-3, rtol=1e-3, what=name)


def test_large_input_uses_threads_consistently():
    x = randn(rng(6), 64, 32, 28, 28)
    y = mnn.ops.neuron_forward(x, "relu")
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    y = mnn.ops.neuron_forward(x, "silu")
    assert_close(y, _ref("silu", x, _coeffs("silu", False)), atol=1e-6, rtol=2e-6, what="silu")


@pytest.mark.parametrize("name", list(REF))
def test_nan_and_inf_propagate(name):
    x = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    y = mnn.ops.neuron_forward(x, name)
    ref = _ref(name, x, _coeffs(name, False))
    assert np.isnan(y[0])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, atol=1e-6, rtol=1e-6, what=name)  # infinities included
    dx = mnn.ops.neuron_backward(np.ones_like(x), x, name)
    assert np.isnan(dx[0])


def test_domain_errors_give_nan_like_the_reference():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], np.float32)
    # log of a negative number: NaN forward and gradient; log(0) = -inf
    y = mnn.ops.neuron_forward(x, "logarithm")
    np.testing.assert_array_equal(np.isnan(y), [True, True, False, False, False])
    assert y[2] == -np.inf
    assert_close(y[3:], np.log(x[3:].astype(np.float64)), atol=1e-6, rtol=1e-6)
    dx = mnn.ops.neuron_backward(np.ones_like(x), x, "logarithm")
    np.testing.assert_array_equal(np.isnan(dx), [True, True, False, False, False])
    # a*x + b moves the domain: log2(2x + 1) is defined for x > -0.5
    y = mnn.ops.neuron_forward(x, "logarithm", a=2.0, b=1.0, c=2.0)
    np.testing.assert_array_equal(np.isnan(y), [True, False, False, False, False])
    assert y[1] == -np.inf
    assert_close(y[2:], np.log2(2 * x[2:].astype(np.float64) + 1), atol=1e-6, rtol=1e-6)
    # negative base with a fractional exponent: NaN; with an integer exponent: real
    with np.errstate(invalid="ignore"):
        ref = np.power(x.astype(np.float64), 1.5)
    y = mnn.ops.neuron_forward(x, "power", c=1.5)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, atol=1e-6, rtol=1e-6)
    assert np.isnan(mnn.ops.neuron_backward(np.ones_like(x), x, "power", c=1.5)[0])
    y = mnn.ops.neuron_forward(x, "power", c=3.0)
    assert_close(y, x.astype(np.float64) ** 3, atol=1e-6, rtol=1e-6)
    # exponential overflows to inf like the reference, and underflows to 0
    y = mnn.ops.neuron_forward(np.array([100.0, -200.0], np.float32), "exponential")
    np.testing.assert_array_equal(y, [np.inf, 0.0])


def test_base_minus_one_means_e():
    x = randn(rng(10), 5, 7)
    for name in ("exponential", "logarithm"):
        xi = np.abs(x) + 0.1 if name == "logarithm" else x
        assert_close(mnn.ops.neuron_forward(xi, name, c=-1.0), mnn.ops.neuron_forward(xi, name, c=math.e),
                     atol=1e-6, rtol=1e-6, what=name)
    y = mnn.ops.neuron_forward(x, "exponential", c=2.0)
    assert_close(y, np.exp2(x.astype(np.float64)), atol=1e-6, rtol=2e-6)


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    with raises_named(ValueError, "neuron_forward", "type"):
        mnn.ops.neuron_forward(x, "swish")
    with raises_named(TypeError, "neuron_forward", "x"):
        mnn.ops.neuron_forward(x.astype(np.float64), "relu")
    with raises_named(TypeError, "neuron_forward", "x"):
        mnn.ops.neuron_forward(x.astype(np.int32), "relu")
    with raises_named(ValueError, "neuron_forward", "x"):
        mnn.ops.neuron_forward(np.ones((4, 6), np.float32)[:, ::2], "relu")
    with raises_named(ValueError, "neuron_backward", "dy"):
        mnn.ops.neuron_backward(np.ones((2, 4), np.float32), x, "relu")
    with raises_named(TypeError, "neuron_backward", "dy"):
        mnn.ops.neuron_backward(x.astype(np.float16), x, "relu")
    with raises_named(ValueError, "neuron_forward", "a"):
        mnn.ops.neuron_forward(x, "leaky_relu", a=float("nan"))
    with raises_named(ValueError, "neuron_forward", "c"):
        mnn.ops.neuron_forward(x, "power", c=float("inf"))


@pytest.mark.parametrize("name,c", [("exponential", 0.0), ("exponential", -2.0), ("logarithm", 1.0),
                                    ("logarithm", -0.5), ("logarithm", 0.0)])
def test_bad_base(name, c):
    x = np.ones((2, 3), np.float32)
    with raises_named(ValueError, "neuron_forward", "c"):
        mnn.ops.neuron_forward(x, name, c=c)
    with raises_named(ValueError, "neuron_backward", "c"):
        mnn.ops.neuron_backward(x, x, name, c=c)


def test_tensor_in_tensor_out():
    x = randn(rng(7), 2, 3)
    t = mnn.tensor(x)
    y = mnn.ops.neuron_forward(t, "relu")
    assert isinstance(y, mnn.Tensor) and y.shape == (2, 3) and y.dtype == "float32"
    np.testing.assert_array_equal(y.numpy(), np.maximum(x, 0))


@pytest.mark.parametrize("name", NEW)
def test_new_types_in_fused_layer_epilogue(name):
    """The fused bias + neuron epilogue of a layer runs the new types (default coefficients)."""
    r = rng(11)
    x, w, bias = randn(r, 5, 13), randn(r, 7, 13, scale=0.3), randn(r, 7)
    if name == "logarithm":
        bias = bias + 10.0  # keep a*x + b inside the domain
    y = mnn.ops.fully_connected_forward(x, w, bias, neuron=name)
    z = mnn.ops.fully_connected_forward(x, w, bias)
    assert_close(y, mnn.ops.neuron_forward(z, name), atol=1e-6, rtol=1e-5, what=name)
    assert not np.allclose(y, z)


# ---------------------------------------------------------------- PReLU


def _prelu_ref(x, s):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x = x.astype(np.float64)
    return np.where(x >= 0, x, s.astype(np.float64).reshape(shape) * x)


PRELU_SHAPES = [(3, 5, 7, 9), (4, 7), (2, 3, 13), (1, 1, 1, 1), (5, 33, 1, 3)]


@pytest.mark.parametrize("shape", PRELU_SHAPES)
def test_prelu_forward_matches_numpy(shape):
    r = rng(20)
    x = randn(r, *shape, scale=2.0)
    s = randn(r, shape[1], scale=0.5)
    y = mnn.ops.prelu_forward(x, s)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, _prelu_ref(x, s), atol=0, rtol=1e-7, what=str(shape))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4), (2, 5, 3)])
def test_prelu_gradients_match_finite_differences(shape):
    r = rng(21)
    x = randn(r, *shape, scale=2.0)
    x = np.where(np.abs(x) < 0.05, x + 0.1, x).astype(np.float32)  # away from the kink
    s = randn(r, shape[1], scale=0.5)
    dy = randn(r, *shape)
    dx = mnn.ops.prelu_backward_input(dy, x, s)
    ds = mnn.ops.prelu_backward_slopes(dy, x)
    assert ds.shape == (shape[1],) and ds.dtype == np.float32
    assert_close(dx, finite_difference(lambda v: _prelu_ref(v, s), x, dy, eps=1e-4), atol=1e-5, rtol=1e-5)
    assert_close(ds, finite_difference(lambda v: _prelu_ref(x, v), s, dy, eps=1e-4), atol=1e-5, rtol=1e-5)
    # and the kernel's own forward, in float32
    assert_close(dx, finite_difference(lambda v: mnn.ops.prelu_forward(v.astype(np.float32), s), x, dy, 1e-2),
                 atol=5e-3, rtol=5e-3)
    assert_close(ds, finite_difference(lambda v: mnn.ops.prelu_forward(x, v.astype(np.float32)), s, dy, 1e-2),
                 atol=5e-3, rtol=5e-3)
    # the written-out formulas
    neg = x < 0
    srs = s.reshape((1, -1) + (1,) * (x.ndim - 2))
    assert_close(dx, np.where(neg, srs * dy, dy), atol=0, rtol=1e-7)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    assert_close(ds, np.sum(np.where(neg, dy.astype(np.float64) * x, 0.0), axis=axes), atol=1e-5, rtol=1e-5)


def test_prelu_float16_matches_float32():
    r = rng(22)
    x = randn(r, 3, 5, 9, 11, dtype=np.float16, scale=2.0)
    s = randn(r, 5, dtype=np.float16, scale=0.5)
    dy = randn(r, *x.shape, dtype=np.float16)
    y16, dx16 = mnn.ops.prelu_forward(x, s), mnn.ops.prelu_backward_input(dy, x, s)
    ds16 = mnn.ops.prelu_backward_slopes(dy, x)
    assert y16.dtype == dx16.dtype == ds16.dtype == np.float16
    f = np.float32
    y32, dx32 = mnn.ops.prelu_forward(x.astype(f), s.astype(f)), mnn.ops.prelu_backward_input(dy.astype(f), x.astype(f),
                                                                                            s.astype(f))
    ds32 = mnn.ops.prelu_backward_slopes(dy.astype(f), x.astype(f))
    assert_close(y16, y32.astype(np.float16), atol=0, rtol=0)
    assert_close(dx16, dx32.astype(np.float16), atol=0, rtol=0)
    assert_close(ds16, ds32, atol=1e-2, rtol=1e-3)  # a sum of 297 terms rounded once to half


def test_prelu_large_input_is_deterministic_across_threads():
    r = rng(23)
    x, dy = randn(r, 16, 6, 40, 40), randn(r, 16, 6, 40, 40)
    s = randn(r, 6)
    ds = mnn.ops.prelu_backward_slopes(dy, x)
    y = mnn.ops.prelu_forward(x, s)
    n = mnn.num_threads()
    try:
        mnn.set_num_threads(1)
        np.testing.assert_array_equal(mnn.ops.prelu_backward_slopes(dy, x), ds)
        np.testing.assert_array_equal(mnn.ops.prelu_forward(x, s), y)
    finally:
        mnn.set_num_threads(n)
    assert_close(ds, np.sum(np.where(x < 0, dy.astype(np.float64) * x, 0), axis=(0, 2, 3)), atol=1e-3, rtol=1e-5)
    assert_close(y, _prelu_ref(x, s), atol=0, rtol=1e-7)


def test_prelu_nan_propagates():
    x = np.array([[np.nan, 1.0, -1.0], [np.inf, -np.inf, 2.0]], np.float32)  # (2, 3): channel per column
    s = np.array([0.5, 0.25, 2.0], np.float32)
    y = mnn.ops.prelu_forward(x, s)
    np.testing.assert_array_equal(y, [[np.nan, 1.0, -2.0], [np.inf, -np.inf, 2.0]])
    dx = mnn.ops.prelu_backward_input(np.ones_like(x), x, s)
    assert np.isnan(dx[0, 0]) and dx[0, 2] == 2.0 and dx[1, 1] == 0.25
    ds = mnn.ops.prelu_backward_slopes(np.ones_like(x), x)
    assert np.isnan(ds[0]) and ds[1] == -np.inf and ds[2] == -1.0


def test_prelu_bad_input():
    x, s = np.ones((2, 3, 4), np.float32), np.ones(3, np.float32)
    with raises_named(ValueError, "prelu_forward", "x"):
        mnn.ops.prelu_forward(np.ones(3, np.float32), s)
    with raises_named(ValueError, "prelu_forward", "slopes"):
        mnn.ops.prelu_forward(x, np.ones(4, np.float32))
    with raises_named(ValueError, "prelu_forward", "slopes"):
        mnn.ops.prelu_forward(x, np.ones((3, 1), np.float32))
    with raises_named(TypeError, "prelu_forward", "slopes"):
        mnn.ops.prelu_forward(x, s.astype(np.float16))
    with raises_named(TypeError, "prelu_forward", "x"):
        mnn.ops.prelu_forward(x.astype(np.float64), s)
    with raises_named(ValueError, "prelu_forward", "x"):
        mnn.ops.prelu_forward(np.ones((2, 6, 4), np.float32)[:, ::2], s)
    with raises_named(ValueError, "prelu_backward_input", "dy"):
        mnn.ops.prelu_backward_input(np.ones((2, 3, 5), np.float32), x, s)
    with raises_named(ValueError, "prelu_backward_input", "slopes"):
        mnn.ops.prelu_backward_input(x, x, np.ones(2, np.float32))
    with raises_named(TypeError, "prelu_backward_slopes", "dy"):
        mnn.ops.prelu_backward_slopes(x.astype(np.float16), x)
    with raises_named(ValueError, "prelu_backward_slopes", "dy"):
        mnn.ops.prelu_backward_slopes(np.ones((2, 3), np.float32), x)
    with raises_named(ValueError, "prelu_backward_slopes", "x"):
        mnn.ops.prelu_backward_slopes(np.ones(3, np.float32), np.ones(3, np.float32))


def test_prelu_tensor_in_tensor_out_and_empty():
    x, s = randn(rng(24), 2, 3, 4), np.array([0.1, 0.2, 0.3], np.float32)
    y = mnn.ops.prelu_forward(mnn.tensor(x), mnn.tensor(s))
    assert isinstance(y, mnn.Tensor)
    np.testing.assert_array_equal(y.numpy(), _prelu_ref(x, s).astype(np.float32))
    empty = np.ones((0, 3, 4), np.float32)
    assert mnn.ops.prelu_forward(empty, s).shape == (0, 3, 4)
    np.testing.assert_array_equal(mnn.ops.prelu_backward_slopes(empty, empty), np.zeros(3, np.float32))
