"""Broadcasting arithmetic (add, subtract, multiply, divide): forward against numpy
broadcasting, gradients against the reduction written from the math and finite
differences, float16, odd shapes, NaN/Inf, and bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import (
    add_backward,
    add_forward,
    arithmetic_backward,
    divide_backward,
    divide_forward,
    multiply_backward,
    multiply_forward,
    subtract_backward,
    subtract_forward,
)

from helpers import assert_close, finite_difference, raises_named, randn, rng

OPS = ["add", "subtract", "multiply", "divide"]
FORWARD = {"add": add_forward, "subtract": subtract_forward, "multiply": multiply_forward, "divide": divide_forward}
NUMPY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide}

# (a shape, b shape): same shape, per-channel, per-pixel, per-batch secondaries, a
# broadcast primary, both broadcasting, matrices and vectors; odd sizes throughout.
SHAPES = [
    ((3, 5, 7, 9), (3, 5, 7, 9)),
    ((3, 5, 7, 9), (1, 5, 1, 1)),
    ((3, 5, 7, 9), (3, 1, 7, 9)),
    ((3, 5, 7, 9), (1, 5, 7, 9)),
    ((1, 5, 1, 1), (3, 5, 7, 9)),
    ((3, 1, 7, 1), (1, 5, 1, 9)),
    ((3, 5, 7, 9), (1, 1, 1, 1)),
    ((7, 13), (1, 13)),
    ((7, 13), (7, 1)),
    ((11,), (1,)),
    ((2, 3, 5), (2, 1, 5)),
]


def _operands(op, a_shape, b_shape, dtype=np.float32, seed=0):
    r = rng(seed)
    a = randn(r, *a_shape, dtype=dtype)
    b = randn(r, *b_shape, dtype=dtype)
    if op == "divide":  # keep divisors away from 0 for finite differences
        b = (np.sign(b) * (np.abs(b) + 0.5)).astype(dtype)
    return a, b


def ref_grads(op, dy, a, b):
    """(da, db) from the math: the element-wise term, summed over broadcast dimensions."""
    dy, a, b = (np.asarray(v, np.float64) for v in (dy, a, b))
    terms = {"add": (dy, dy), "subtract": (dy, -dy), "multiply": (dy * b, dy * a),
             "divide": (dy / b, -dy * a / (b * b))}[op]

    def reduce(t, shape):
        t = np.broadcast_to(t, dy.shape)
        axes = tuple(k for k, s in enumerate(shape) if s == 1 and dy.shape[k] != 1)
        return t.sum(axis=axes, keepdims=True).reshape(shape)

    return reduce(terms[0], a.shape), reduce(terms[1], b.shape)


def _backward(op, dy, a, b):
    if op == "add":
        return add_backward(dy, a.shape, b.shape)
    if op == "subtract":
        return subtract_backward(dy, a.shape, b.shape)
    return (multiply_backward if op == "multiply" else divide_backward)(dy, a, b)


@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
@pytest.mark.parametrize("op", OPS)
def test_forward_and_gradients(op, a_shape, b_shape):
    a, b = _operands(op, a_shape, b_shape)
    y = FORWARD[op](a, b)
    ref = NUMPY[op](a.astype(np.float64), b.astype(np.float64))
    assert y.shape == ref.shape and y.dtype == np.float32
    assert_close(y, ref, what=f"{op} forward")
    dy = randn(rng(1), *ref.shape)
    da, db = _backward(op, dy, a, b)
    ra, rb = ref_grads(op, dy, a, b)
    assert da.shape == a.shape and db.shape == b.shape
    # Sums over broadcast dimensions: float32 rounding grows with the number of terms.
    assert_close(da, ra, rtol=1e-5, atol=1e-4 * max(1.0, np.abs(ra).max()), what=f"{op} da")
    assert_close(db, rb, rtol=1e-5, atol=1e-4 * max(1.0, np.abs(rb).max()), what=f"{op} db")
    # The generic entry point computes the same single operand.
    np.testing.assert_array_equal(arithmetic_backward(op, 1, dy, a.shape, b.shape, a, b), db)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 3, 5), (1, 3, 1, 1)), ((1, 3, 1, 5), (2, 3, 3, 1))])
def test_finite_differences(op, a_shape, b_shape):
    a, b = _operands(op, a_shape, b_shape, seed=2)
    out_shape = np.broadcast_shapes(a_shape, b_shape)
    dy = randn(rng(3), *out_shape)
    da, db = _backward(op, dy, a, b)
    fa = finite_difference(lambda v: NUMPY[op](v, b.astype(np.float64)), a, dy)
    fb = finite_difference(lambda v: NUMPY[op](a.astype(np.float64), v), b, dy)
    assert_close(da, fa, rtol=1e-4, atol=1e-3 * max(1.0, np.abs(fa).max()), what="da vs finite differences")
    assert_close(db, fb, rtol=1e-4, atol=1e-3 * max(1.0, np.abs(fb).max()), what="db vs finite differences")
    # The kernel's own forward agrees with the finite-difference slope too.
    eps = 1e-2
    bp, bm = b.copy(), b.copy()
    bp.reshape(-1)[0] += eps
    bm.reshape(-1)[0] -= eps
    slope = (np.sum(FORWARD[op](a, bp) * dy, dtype=np.float64) - np.sum(FORWARD[op](a, bm) * dy, dtype=np.float64))
    assert abs(slope / (2 * eps) - db.reshape(-1)[0]) < 2e-2 * max(1.0, abs(db.reshape(-1)[0]))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a_shape,b_shape", [((3, 5, 7, 9), (1, 5, 1, 1)), ((3, 5, 7, 9), (3, 5, 7, 9)),
                                             ((3, 1, 7, 9), (1, 5, 1, 1))])
def test_float16(op, a_shape, b_shape):
    a, b = _operands(op, a_shape, b_shape, np.float16, seed=4)
    y = FORWARD[op](a, b)
    assert y.dtype == np.float16
    y32 = FORWARD[op](a.astype(np.float32), b.astype(np.float32))
    # Computed in float32 and rounded once: exactly the float32 result rounded.
    np.testing.assert_array_equal(y, y32.astype(np.float16))
    dy = randn(rng(5), *y.shape, dtype=np.float16)
    da, db = _backward(op, dy, a, b)
    ra, rb = _backward(op, dy.astype(np.float32), a.astype(np.float32), b.astype(np.float32))
    assert da.dtype == np.float16 and db.dtype == np.float16
    assert_close(da, ra, np.float16, what="float16 da")
    assert_close(db, rb, np.float16, what="float16 db")


def test_large_broadcast_reduction_threads():
    """A per-channel gradient over a large batch: the blocked partial sums match float64."""
    a = randn(rng(6), 33, 7, 17, 19)
    b = randn(rng(7), 1, 7, 1, 1)
    dy = randn(rng(8), *a.shape)
    _, db = multiply_backward(dy, a, b)
    ref = (dy.astype(np.float64) * a).sum(axis=(0, 2, 3), keepdims=True)
    assert_close(db, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
    prev = mnn.num_threads()
    try:
        mnn.set_num_threads(1)
        _, db1 = multiply_backward(dy, a, b)
    finally:
        mnn.set_num_threads(prev)
    np.testing.assert_array_equal(db, db1)  # independent of the thread count


def test_nan_inf_propagate():
    a = np.array([[1.0, np.nan, np.inf, 2.0]], np.float32)
    b = np.array([[0.0]], np.float32)
    y = divide_forward(a, b)
    assert np.isinf(y[0, 0]) and np.isnan(y[0, 1]) and np.isinf(y[0, 2]) and np.isinf(y[0, 3])
    y = add_forward(a, np.ones((1, 1), np.float32))
    assert np.isnan(y[0, 1]) and np.isinf(y[0, 2])
    _, db = multiply_backward(np.ones_like(a), a, np.ones((1, 1), np.float32))
    assert np.isnan(db[0, 0])


def test_same_shape_any_rank():
    """One shape needs no broadcasting: any rank (the graph sums gradients of every shape), empty too."""
    a, b = randn(rng(9), 2, 3, 1, 2, 5), randn(rng(10), 2, 3, 1, 2, 5)
    np.testing.assert_array_equal(add_forward(a, b), a + b)
    np.testing.assert_array_equal(multiply_forward(a, b), a * b)
    da, db = multiply_backward(a, a, b)
    np.testing.assert_array_equal(db, a * a)
    s = np.float32(3.0) * np.ones((), np.float32)
    assert add_forward(s, s) == 6.0
    assert add_forward(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_bad_input():
    a = randn(rng(11), 2, 3, 4, 5)
    with raises_named(ValueError, "add_forward", "does not broadcast"):
        add_forward(a, randn(rng(), 2, 2, 4, 5))
    with raises_named(ValueError, "multiply_forward", "rank"):
        multiply_forward(a, randn(rng(), 3, 4, 5))
    with raises_named(TypeError, "subtract_forward", "b"):
        subtract_forward(a, a.astype(np.float16))
    with raises_named(TypeError, "divide_forward", "a"):
        divide_forward(a.astype(np.int32), a.astype(np.int32))
    with raises_named(ValueError, "add_forward", "dimensions"):
        add_forward(np.zeros((1, 1, 1, 1, 2), np.float32), np.zeros((1, 1, 1, 1, 1), np.float32))
    with raises_named(ValueError, "add_forward", "a must have positive sizes"):
        add_forward(np.zeros((0, 3), np.float32), np.zeros((1, 3), np.float32))
    with raises_named(ValueError, "add_backward", "dy"):
        add_backward(randn(rng(), 2, 3, 4, 4), a.shape, (1, 3, 1, 1))
    with raises_named(ValueError, "multiply_backward", "dy"):
        multiply_backward(randn(rng(), 2, 3), a, a)
    with raises_named(ValueError, "arithmetic_forward", "op"):
        mnn.ops.arithmetic_forward("power", a, a)
    with raises_named(ValueError, "divide_backward", "a and b are required"):
        arithmetic_backward("divide", 0, a, a.shape, a.shape)
    with raises_named(ValueError, "add_backward", "operand"):
        arithmetic_backward("add", 2, a, a.shape, a.shape)
    with pytest.raises((TypeError, ValueError), match=r"^\[multiply_forward\].*b"):
        multiply_forward(a, a[:, :, :, ::2])  # non-contiguous
