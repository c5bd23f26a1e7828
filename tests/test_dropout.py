"""Dropout: the mask against the documented counter-based hash (written out in numpy),
its keep fraction, y = x * mask / keep, the gradient's reuse of the mask, determinism
across seeds, shapes and thread counts, float16, bad input, NaN propagation."""

import numpy as np
import pytest

import metalnn as mnn

from helpers import assert_close, raises_named, randn, rng

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _ref_mask(seed, n, keep):
    """mask[i] = u(seed, i) < keep, u = top 24 bits of mix64(mix64(seed + G) + i * G) / 2^24."""
    with np.errstate(over="ignore"):
        key = _mix64(np.array([seed], np.uint64) + GOLDEN)[0]
        bits = _mix64(key + np.arange(n, dtype=np.uint64) * GOLDEN) >> np.uint64(40)
    u = bits.astype(np.float64) / 2.0**24
    return (u < keep).astype(np.uint8)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_mask_matches_hash_and_keep_fraction(keep):
    n = 100_000
    x = randn(rng(0), n)
    y, state = mnn.ops.dropout_forward(x, keep, seed=42)
    mask = state.mask
    assert mask.dtype == np.uint8 and mask.shape == (n,) and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, _ref_mask(42, n, keep))
    # Binomial: the kept fraction is within 5 standard deviations of keep.
    assert abs(mask.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
    assert state.keep_probability == keep and state.seed == 42 and state.shape == (n,)


@pytest.mark.parametrize("shape", [(37,), (3, 5, 7), (2, 3, 11, 13)])
def test_forward_and_backward_match_formula(shape):
    keep = 0.7
    x = randn(rng(1), *shape)
    y, state = mnn.ops.dropout_forward(x, keep_probability=keep, seed=7)
    assert y.shape == shape and y.dtype == np.float32
    mask = state.mask
    assert mask.shape == shape
    assert 0 < mask.sum() < mask.size
    assert_close(y, x.astype(np.float64) * mask / keep, rtol=1e-6, atol=0)
    dy = randn(rng(2), *shape)
    dx = mnn.ops.dropout_backward(dy, state)
    assert dx.shape == shape and dx.dtype == np.float32
    assert_close(dx, dy.astype(np.float64) * mask / keep, rtol=1e-6, atol=0)
    # the mask is the flat-index mask, whatever the shape
    np.testing.assert_array_equal(mask.reshape(-1), _ref_mask(7, x.size, keep))


def test_seeds():
    x = np.ones(50_000, np.float32)
    _, a = mnn.ops.dropout_forward(x, 0.5, seed=123)
    _, b = mnn.ops.dropout_forward(x, 0.5, seed=123)
    _, c = mnn.ops.dropout_forward(x, 0.5, seed=124)
    np.testing.assert_array_equal(a.mask, b.mask)
    # Independent masks agree on about half the elements (p^2 + (1-p)^2).
    agree = np.mean(a.mask == c.mask)
    assert abs(agree - 0.5) < 0.02
    # and the seed's stream is not a shifted copy of its neighbour's
    assert not np.array_equal(a.mask[1:], c.mask[:-1])
    _, big = mnn.ops.dropout_forward(x[:100], 0.5, seed=2**64 - 1)
    np.testing.assert_array_equal(big.mask, _ref_mask(2**64 - 1, 100, 0.5))


def test_thread_count_does_not_change_mask():
    x = randn(rng(3), 3 * (1 << 14) + 11)
    outs = []
    try:
        for threads in (1, 2, 3):
            mnn.set_num_threads(threads)
            y, s = mnn.ops.dropout_forward(x, 0.6, seed=5)
            dx = mnn.ops.dropout_backward(x, s)
            outs.append((y, s.mask.copy(), dx))
    finally:
        mnn.set_num_threads(0)
    for y, mask, dx in outs[1:]:
        np.testing.assert_array_equal(mask, outs[0][1])
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(dx, outs[0][2])


def test_keep_one_is_identity():
    x = randn(rng(4), 3, 5, 7)
    y, s = mnn.ops.dropout_forward(x, 1.0, seed=9)
    np.testing.assert_array_equal(y, x)
    assert np.all(s.mask == 1)
    np.testing.assert_array_equal(mnn.ops.dropout_backward(x, s), x)


def test_float16():
    keep = 0.3
    x = randn(rng(5), 2, 3, 11, 13, dtype=np.float16)
    y, s = mnn.ops.dropout_forward(x, keep, seed=11)
    _, s32 = mnn.ops.dropout_forward(x.astype(np.float32), keep, seed=11)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(s.mask, s32.mask)
    ref = (x.astype(np.float64) * s.mask / keep).astype(np.float16)
    assert_close(y, ref, atol=1e-3, rtol=1e-3)
    dy = randn(rng(6), *x.shape, dtype=np.float16)
    dx = mnn.ops.dropout_backward(dy, s)
    assert dx.dtype == np.float16
    assert_close(
        dx, (dy.astype(np.float64) * s.mask / keep).astype(np.float16), atol=1e-3, rtol=1e-3
    )
    # a float32 gradient through a float16 forward's state
    dx32 = mnn.ops.dropout_backward(dy.astype(np.float32), s)
    assert dx32.dtype == np.float32


def test_nan_and_inf_propagate():
    x = np.full(64, np.nan, np.float32)
    x[::2] = np.inf
    y, s = mnn.ops.dropout_forward(x, 0.5, seed=1)
    kept = s.mask == 1
    assert kept.any() and (~kept).any()
    assert np.all(np.isinf(y[kept & (np.arange(64) % 2 == 0)]))
    assert np.all(np.isnan(y[~kept]))  # 0 * inf and 0 * nan
    dx = mnn.ops.dropout_backward(np.full(64, np.nan, np.float32), s)
    assert np.all(np.isnan(dx))


def test_tensor_in_tensor_out():
    x = randn(rng(7), 4, 9)
    y, s = mnn.ops.dropout_forward(mnn.tensor(x), 0.5, seed=3)
    assert (
        isinstance(y, mnn.Tensor)
        and isinstance(s, mnn.State)
        and isinstance(s, mnn.ops.DropoutState)
    )
    assert s.source_op == "dropout_forward"
    dx = mnn.ops.dropout_backward(mnn.tensor(np.ones_like(x)), s)
    assert isinstance(dx, mnn.Tensor)
    np.testing.assert_allclose(dx.numpy(), s.mask * 2.0)


def test_bad_input():
    x = np.ones((3, 5), np.float32)
    for keep in (0.0, -0.1, 1.5, float("nan"), float("inf")):
        with raises_named(ValueError, "dropout_forward", "keep_probability"):
            mnn.ops.dropout_forward(x, keep)
    with raises_named(TypeError, "dropout_forward", "x"):
        mnn.ops.dropout_forward(x.astype(np.float64))
    with raises_named(TypeError, "dropout_forward", "x"):
        mnn.ops.dropout_forward(x.astype(np.int32))
    with raises_named(ValueError, "dropout_forward", "x"):
        mnn.ops.dropout_forward(np.ones((3, 10), np.float32)[:, ::2])
    with raises_named(ValueError, "dropout_forward", "seed"):
        mnn.ops.dropout_forward(x, 0.5, seed=-1)
    with raises_named(ValueError, "dropout_forward", "seed"):
        mnn.ops.dropout_forward(x, 0.5, seed=2**64)
    with raises_named(TypeError, "dropout_forward", "seed"):
        mnn.ops.dropout_forward(x, 0.5, seed=1.5)
    _, s = mnn.ops.dropout_forward(x, 0.5)
    with raises_named(ValueError, "dropout_backward", "dy"):
        mnn.ops.dropout_backward(np.ones((5, 3), np.float32), s)
    with raises_named(ValueError, "dropout_backward", "dy"):
        mnn.ops.dropout_backward(np.ones((15,), np.float32), s)
    with raises_named(TypeError, "dropout_backward", "dy"):
        mnn.ops.dropout_backward(x.astype(np.int32), s)
    for not_a_state in (x, "state", None, 3):
        with raises_named(TypeError, "dropout_backward", "state"):
            mnn.ops.dropout_backward(x, not_a_state)
