"""Neurons: forward against numpy, gradient against finite differences and the
derivative written out, float16, bad input, NaN propagation."""

import math

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, finite_difference, raises_named, randn, rng

_erf = np.vectorize(math.erf)

# Reference f(x) in float64 with the MPS default coefficients the kernels use.
REF = {
    "none": (lambda x, a, b: x, {}),
    "relu": (lambda x, a, b: np.where(x >= 0, x, a * x), {"a": 0.0}),
    "leaky_relu": (lambda x, a, b: np.where(x >= 0, x, a * x), {"a": 0.01}),
    "sigmoid": (lambda x, a, b: 1 / (1 + np.exp(-x)), {}),
    "hard_sigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), {"a": 0.2, "b": 0.5}),
    "tanh": (lambda x, a, b: a * np.tanh(b * x), {"a": 1.0, "b": 1.0}),
    "linear": (lambda x, a, b: a * x + b, {"a": 1.0, "b": 0.0}),
    "absolute": (lambda x, a, b: np.abs(x), {}),
    "softplus": (lambda x, a, b: a * np.log1p(np.exp(b * x)), {"a": 1.0, "b": 1.0}),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(x)), {"a": 1.0}),
    "relun": (lambda x, a, b: np.minimum(np.where(x >= 0, x, a * x), b), {"a": 0.0, "b": 6.0}),
    "gelu": (lambda x, a, b: 0.5 * x * (1 + _erf(x / math.sqrt(2))), {}),
}
# Non-default coefficients, so tests also exercise a, b.
CUSTOM = {"leaky_relu": {"a": 0.3}, "hard_sigmoid": {"a": 0.4, "b": 0.3}, "tanh": {"a": 1.7, "b": 0.6},
          "linear": {"a": -2.5, "b": 0.75}, "softplus": {"a": 0.5, "b": 2.0}, "elu": {"a": 0.8},
          "relun": {"a": 0.1, "b": 1.5}}
KINKS = {"relu": [0.0], "leaky_relu": [0.0], "absolute": [0.0], "elu": [0.0], "relun": [0.0, 1.5, 6.0],
         "hard_sigmoid": [-2.5, 2.5, -1.25, 1.75]}


def _coeffs(name, custom):
    _, defaults = REF[name]
    c = dict(defaults)
    if custom:
        c.update(CUSTOM.get(name, {}))
    return c


def _input(name, shape, seed, dtype=np.float32):
    x = randn(rng(seed), *shape, scale=2.0).astype(np.float64)
    # Keep finite differences away from kinks.
    for k in KINKS.get(name, []):
        x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
    return x.astype(dtype)


@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", list(REF))
def test_forward_matches_numpy(name, custom):
    c = _coeffs(name, custom)
    x = _input(name, (3, 5, 7, 9), seed=1)
    y = mnn.ops.neuron_forward(x, name, **(CUSTOM.get(name, {}) if custom else {}))
    f = REF[name][0]
    ref = f(x.astype(np.float64), c.get("a", 0.0), c.get("b", 0.0))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, ref, atol=1e-6, rtol=2e-6, what=name)


@pytest.mark.parametrize("custom", [False, True])
@pytest.mark.parametrize("name", list(REF))
def test_backward_matches_finite_differences(name, custom):
    c = _coeffs(name, custom)
    kw = CUSTOM.get(name, {}) if custom else {}
    x = _input(name, (2, 3, 5), seed=2)
    dy = randn(rng(3), *x.shape)
    dx = mnn.ops.neuron_backward(dy, x, name, **kw)
    f = REF[name][0]
    num = finite_difference(lambda v: f(v, c.get("a", 0.0), c.get("b", 0.0)), x, dy, eps=1e-4)
    assert_close(dx, num, atol=1e-4, rtol=1e-4, what=name)
    # and the kernel's own forward, differentiated numerically in float32
    num32 = finite_difference(lambda v: mnn.ops.neuron_forward(v.astype(np.float32), name, **kw), x, dy,
                              eps=1e-2)
    assert_close(dx, num32, atol=5e-3, rtol=5e-3, what=name + " (kernel forward)")


@pytest.mark.parametrize("name", list(REF))
def test_float16_matches_float32(name):
    x = _input(name, (2, 3, 11, 13), seed=4, dtype=np.float16)
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


@pytest.mark.parametrize("name", list(REF))
def test_nan_and_inf_propagate(name):
    x = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    y = mnn.ops.neuron_forward(x, name)
    f, d = REF[name]
    with np.errstate(all="ignore"):
        ref = f(x.astype(np.float64), d.get("a", 0.0), d.get("b", 0.0))
    assert np.isnan(y[0])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    dx = mnn.ops.neuron_backward(np.ones_like(x), x, name)
    assert np.isnan(dx[0])


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


def test_tensor_in_tensor_out():
    x = randn(rng(7), 2, 3)
    t = mnn.tensor(x)
    y = mnn.ops.neuron_forward(t, "relu")
    assert isinstance(y, mnn.Tensor) and y.shape == (2, 3) and y.dtype == "float32"
    np.testing.assert_array_equal(y.numpy(), np.maximum(x, 0))
