"""Shared test helpers: tolerances, finite differences, bad-input checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

DTYPES = [np.float32, np.float16]

# Relative tolerance per storage dtype (llm.c style: atol + |ref| * rtol).
RTOL = {np.float32: 1e-5, np.float16: 2e-3}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(r: np.random.Generator, *shape, dtype=np.float32, scale: float = 1.0) -> np.ndarray:
    return (r.standard_normal(shape) * scale).astype(dtype)


def assert_close(actual, expected, dtype=np.float32, atol: float | None = None, rtol: float | None = None,
                 what: str = ""):
    """|actual - expected| <= atol + rtol * |expected|, elementwise; NaNs must match."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    rtol = RTOL[np.dtype(dtype).type] if rtol is None else rtol
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    atol = rtol * scale if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def finite_difference(fn, x: np.ndarray, dy: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Numerical d/dx of sum(fn(x) * dy), by central differences in float64.

    ``fn`` maps a float64 array to an array; it is evaluated at x +- eps per element.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    dy = np.asarray(dy, dtype=np.float64)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = np.sum(np.asarray(fn(x), dtype=np.float64) * dy)
        flat[i] = orig - eps
        minus = np.sum(np.asarray(fn(x), dtype=np.float64) * dy)
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def raises_named(exc, op: str, arg: str):
    """pytest.raises that also checks the message starts with [op] and names arg."""
    return pytest.raises(exc, match=rf"^\[{re.escape(op)}\].*{re.escape(arg)}")
