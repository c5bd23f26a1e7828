"""neuron.metal on the CPU emulator (tests/metal) against the CPU backend (mnn.ops.*): every
neuron type (default and custom coefficients a, b, c, domain edges, NaN/Inf) and PReLU
(forward, input gradient, slope-gradient reduction), on odd sizes, float32 and float16."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from harness import SUFFIX, lib, run_both_schedules, skip_without_clang  # noqa: E402
from params_conv import FullyConnectedParams  # noqa: E402
from params_neuron import NeuronParams, PReLUParams  # noqa: E402

skip_without_clang()

TYPES = mnn.ops.NEURON_TYPES
# (a, b, c) as the ops resolve them: defaults, then non-default values.
DEFAULTS = {"relu": (0.0, 0.0, 0.0), "leaky_relu": (0.01, 0.0, 0.0), "hard_sigmoid": (0.2, 0.5, 0.0),
            "tanh": (1.0, 1.0, 0.0), "linear": (1.0, 0.0, 0.0), "softplus": (1.0, 1.0, 0.0),
            "elu": (1.0, 0.0, 0.0), "relun": (0.0, 6.0, 0.0), "power": (1.0, 0.0, 2.0),
            "exponential": (1.0, 0.0, -1.0), "logarithm": (1.0, 0.0, -1.0),
            "selu": (1.6732632423543772, 1.0507009873554805, 0.0)}
CUSTOM = {"leaky_relu": (0.3, 0.0, 0.0), "hard_sigmoid": (0.4, 0.3, 0.0), "tanh": (1.7, 0.6, 0.0),
          "linear": (-2.5, 0.75, 0.0), "softplus": (0.5, 2.0, 0.0), "elu": (0.8, 0.0, 0.0),
          "relun": (0.1, 1.5, 0.0), "power": (0.5, 1.0, 1.5), "exponential": (0.7, -0.5, 2.5),
          "logarithm": (1.5, 3.0, 10.0), "selu": (1.2, 0.9, 0.0)}  # -b/a exact for log, power


def _run_neuron(name, x, dy, a, b, c):
    p = NeuronParams(TYPES.index(name), a, b, c)
    n = np.uint32(x.size)
    k, sfx = lib("neuron"), SUFFIX[x.dtype.type]
    y, = run_both_schedules(k, f"neuron_forward_{sfx}", [x, ("out", 0), p, n], [x], x.size, 64)
    dx, = run_both_schedules(k, f"neuron_backward_{sfx}", [dy, x, ("out", 0), p, n], [x], x.size, 64)
    return y, dx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,custom", [(t, False) for t in TYPES] + [(t, True) for t in CUSTOM])
def test_neuron(name, dtype, custom):
    r = rng(1)
    x = randn(r, 3, 7, 11, dtype=dtype, scale=3.0)  # 231 elements: not a multiple of 64
    # edges: 0, NaN, large values, the domain edge of log/power (x = -b/a), outside it (NaN)
    a, b, c = (CUSTOM if custom else DEFAULTS).get(name, (0.0, 0.0, 0.0))
    # (only where the domain ends there: elsewhere -b/a can be a kink, and a*x + b rounds
    # to either side of it depending on FMA contraction)
    edge = -b / a if name in ("logarithm", "power") else 0.5  # exactly representable
    if name in ("logarithm", "power"):
        # random values keep clear of the edge: there a*x + b cancels, and FMA contraction (or
        # not) changes the rounding of what is left; the exact edge is set below
        z = a * x.astype(np.float64) + b
        x = np.where(np.abs(z) < 0.05, x + np.float32(0.1 / a), x).astype(dtype)
    x.reshape(-1)[:8] = [0.0, np.nan, 25.0, -25.0, np.inf, -np.inf, edge, edge - 1.0]
    dy = randn(r, *x.shape, dtype=dtype)
    y, dx = _run_neuron(name, x, dy, a, b, c)
    # the ops get the same a, b, c explicitly (they equal the ops' defaults when not custom)
    y_ref, dx_ref = mnn.ops.neuron_forward(x, name, a, b, c), mnn.ops.neuron_backward(dy, x, name, a, b, c)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref), err_msg=f"{name} forward NaNs")
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(dx_ref), err_msg=f"{name} backward NaNs")
    # emulated MSL math (Kahan expm1/log1p, a fitted erf) is not libm's: a few ulp apart.
    # Explicit atol: exp(25) in the data must not widen the tolerance of every element.
    tol = 1e-5 if dtype == np.float32 else 2e-3
    assert_close(y, y_ref, dtype, atol=tol, rtol=tol, what=f"{name} forward")
    assert_close(dx, dx_ref, dtype, atol=tol, rtol=tol, what=f"{name} backward")


def test_every_neuron_type_changes_its_input():
    """A kernel whose switch missed a type would return x (or dy) unchanged: catch it."""
    x = np.linspace(-3.0, 3.0, 97, dtype=np.float32) + 3.5  # positive: every type is defined
    dy = np.ones_like(x)
    for name in TYPES:
        if name in ("none", "relu", "leaky_relu", "relun", "elu", "linear", "absolute"):
            continue  # identity (or identity-like) on positive inputs
        y, dx = _run_neuron(name, x, dy, *DEFAULTS.get(name, (0.0, 0.0, 0.0)))
        assert not np.allclose(y, x), name
        assert not np.allclose(dx, dy), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ("softsign", "power", "exponential", "logarithm", "silu", "mish", "selu"))
def test_new_types_in_fused_layer_epilogue(name, dtype):
    """linear.metal's fused bias + neuron epilogue (the shared mnn_neuron) runs the new types."""
    r = rng(3)
    n, f, o = 5, 37, 9
    x, w = randn(r, n, f, dtype=dtype), randn(r, o, f, dtype=dtype, scale=0.3)
    bias = (randn(r, o) + (10.0 if name == "logarithm" else 0.0)).astype(dtype)  # inside log's domain
    a, b, c = DEFAULTS.get(name, (0.0, 0.0, 0.0))
    y0 = np.zeros((n, o), dtype)
    y, pre = run_both_schedules(
        lib("linear"), f"fully_connected_forward_{SUFFIX[dtype]}",
        [x, w, bias, ("out", 0), ("out", 1), FullyConnectedParams(n, f, o, 0, 1),
         NeuronParams(TYPES.index(name), a, b, c), np.uint32(1)], [y0, y0], (16, 16, 1), (16, 16, 1))
    y_ref, pre_ref = mnn.ops.fully_connected_forward(x, w, bias, neuron=name, return_preactivation=True)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    assert_close(pre, pre_ref, dtype, atol=tol, rtol=tol, what=f"{name} pre-activation")
    assert_close(y, y_ref, dtype, atol=tol, rtol=tol, what=f"{name} fused")
    assert not np.allclose(y.astype(np.float32), pre.astype(np.float32))


def _prelu_params(shape):
    inner = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return PReLUParams(shape[0], shape[1], inner, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (13, 7), (2, 37, 3), (1, 3, 1, 1)])
def test_prelu(shape, dtype):
    r = rng(2)
    x = randn(r, *shape, dtype=dtype, scale=2.0)
    x.reshape(-1)[:2] = [0.0, np.nan]
    s = randn(r, shape[1], dtype=dtype, scale=0.5)
    dy = randn(r, *shape, dtype=dtype)
    p, n = _prelu_params(shape), np.uint32(x.size)
    k, sfx = lib("neuron"), SUFFIX[dtype]
    y, = run_both_schedules(k, f"prelu_forward_{sfx}", [x, s, ("out", 0), p, n], [x], x.size, 64)
    dx, = run_both_schedules(k, f"prelu_backward_input_{sfx}", [dy, x, s, ("out", 0), p, n], [x], x.size, 64)
    assert_close(y, mnn.ops.prelu_forward(x, s), dtype, what="prelu forward")
    assert_close(dx, mnn.ops.prelu_backward_input(dy, x, s), dtype, what="prelu backward input")
    # slope gradient: one threadgroup per channel (the host picks whole simd-groups, <= 1024)
    x.reshape(-1)[1] = -1.0  # no NaN here: the reduction is compared by value
    ds_ref = mnn.ops.prelu_backward_slopes(dy, x)
    per_channel = x.size // shape[1]
    for width in sorted({32, min(1024, -(-per_channel // 32) * 32)}):
        ds, = run_both_schedules(k, f"prelu_backward_slopes_{sfx}", [dy, x, ("out", 0), p],
                                 [np.zeros(shape[1], dtype)], shape[1] * width, width)
        tol = 1e-5 if dtype == np.float32 else 2e-3
        assert_close(ds, ds_ref, dtype, atol=tol * max(1, per_channel ** 0.5), rtol=tol,
                     what=f"prelu backward slopes (threadgroup {width})")


def test_prelu_slopes_nan_channel():
    x = np.array([[[1.0, np.nan]], [[-2.0, 3.0]]], np.float32).transpose(0, 2, 1).copy()  # (2, 2, 1)
    dy = np.ones_like(x)
    k = lib("neuron")
    ds, = run_both_schedules(k, "prelu_backward_slopes_float32", [dy, x, ("out", 0), _prelu_params(x.shape)],
                             [np.zeros(2, np.float32)], 2 * 32, 32)
    ref = mnn.ops.prelu_backward_slopes(dy, x)
    np.testing.assert_array_equal(np.isnan(ds), np.isnan(ref))
    assert np.isnan(ds[1]) and ds[0] == ref[0] == -2.0
