"""Max and average pooling: forward against loop references written from the math,
argmax ties and NaNs, gradients against finite differences, float16, bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

from helpers import assert_close, finite_difference, raises_named, randn, rng

# (input shape, kernel_size, stride, padding): the MNIST shapes' fast path (even and odd
# widths), odd sizes with asymmetric padding, overlapping windows, rectangular kernels.
CASES = [
    ((2, 3, 28, 28), 2, None, 0),
    ((2, 3, 14, 14), 2, 2, 0),
    ((2, 3, 9, 7), 2, 2, 0),
    ((3, 5, 11, 9), 3, 2, (1, 0, 2, 1)),
    ((3, 5, 11, 9), 3, 1, 1),
    ((2, 3, 10, 13), (2, 3), (1, 2), (1, 0)),
    ((1, 2, 7, 19), (3, 4), (3, 1), (2, 1, 0, 3)),
    ((2, 2, 5, 6), 5, 3, (0, 2, 1, 2)),
]


def _pads(padding):
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)


def _geometry(shape, kernel_size, stride, padding):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if stride is None:
        stride = (kh, kw)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    top, bottom, left, right = _pads(padding)
    H, W = shape[2], shape[3]
    oh = (H + top + bottom - kh) // sh + 1
    ow = (W + left + right - kw) // sw + 1
    return kh, kw, sh, sw, top, left, oh, ow


def _windows(shape, kernel_size, stride, padding):
    """Yields (i, j, [(h, w), ...]) with the real positions of each window, row-major."""
    kh, kw, sh, sw, top, left, oh, ow = _geometry(shape, kernel_size, stride, padding)
    H, W = shape[2], shape[3]
    for i in range(oh):
        for j in range(ow):
            cells = [(h, w) for h in range(i * sh - top, i * sh - top + kh)
                     for w in range(j * sw - left, j * sw - left + kw) if 0 <= h < H and 0 <= w < W]
            yield i, j, cells


def ref_max(x, kernel_size, stride=None, padding=0):
    """y and argmax: the first maximum in row-major window order; a NaN wins (the first)."""
    _, _, _, _, _, _, oh, ow = _geometry(x.shape, kernel_size, stride, padding)
    N, C, H, W = x.shape
    y = np.zeros((N, C, oh, ow), np.float64)
    arg = np.zeros((N, C, oh, ow), np.int64)
    for i, j, cells in _windows(x.shape, kernel_size, stride, padding):
        for n in range(N):
            for c in range(C):
                vals = [x[n, c, h, w] for h, w in cells]
                nan = [k for k, v in enumerate(vals) if np.isnan(v)]
                k = nan[0] if nan else int(np.argmax(vals))  # argmax takes the first maximum
                y[n, c, i, j] = vals[k]
                arg[n, c, i, j] = cells[k][0] * W + cells[k][1]
    return y, arg


def ref_max_backward(dy, arg, input_shape):
    N, C, H, W = input_shape
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], arg[n, c].ravel(), dy[n, c].ravel())
    return dx.reshape(input_shape)


def ref_avg(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    kh, kw, _, _, _, _, oh, ow = _geometry(x.shape, kernel_size, stride, padding)
    y = np.zeros(x.shape[:2] + (oh, ow))
    for i, j, cells in _windows(x.shape, kernel_size, stride, padding):
        d = kh * kw if count_include_pad else len(cells)
        y[:, :, i, j] = sum(x[:, :, h, w].astype(np.float64) for h, w in cells) / d
    return y


def ref_avg_backward(dy, input_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    dx = np.zeros(input_shape)
    for i, j, cells in _windows(input_shape, kernel_size, stride, padding):
        d = kh * kw if count_include_pad else len(cells)
        for h, w in cells:
            dx[:, :, h, w] += dy[:, :, i, j] / d
    return dx


def _distinct(shape, seed):
    """Distinct values 0.1 apart, shuffled: max-pool is differentiable with eps << 0.05."""
    x = rng(seed).permutation(int(np.prod(shape))).astype(np.float64) * 0.1 - 5.0
    return x.reshape(shape).astype(np.float32)


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_max_forward_matches_reference(shape, k, s, p):
    x = randn(rng(1), *shape)
    y, state = max_pool2d_forward(x, k, s, p)
    ref, arg = ref_max(x, k, s, p)
    assert y.dtype == np.float32 and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    assert isinstance(state, mnn.State) and state.source_op == "max_pool2d_forward"
    assert state.argmax.dtype == np.int32 and state.input_shape == shape
    np.testing.assert_array_equal(state.argmax, arg)


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_max_backward_matches_reference_and_finite_differences(shape, k, s, p):
    x = _distinct(shape, seed=2)
    y, state = max_pool2d_forward(x, k, s, p)
    dy = randn(rng(3), *y.shape)
    dx = max_pool2d_backward(dy, state)
    assert dx.dtype == np.float32 and dx.shape == shape
    _, arg = ref_max(x, k, s, p)
    assert_close(dx, ref_max_backward(dy, arg, shape), atol=1e-6, rtol=1e-6)
    if np.prod(shape) <= 600:
        num = finite_difference(lambda v: ref_max(v, k, s, p)[0], x, dy, eps=1e-3)
        assert_close(dx, num, atol=1e-4, rtol=1e-4, what="reference forward")
        num32 = finite_difference(
            lambda v: max_pool2d_forward(v.astype(np.float32), k, s, p)[0], x, dy, eps=1e-2)
        assert_close(dx, num32, atol=1e-3, rtol=1e-3, what="kernel forward")


def test_overlapping_windows_accumulate():
    # kernel 3, stride 1: a large value wins up to 9 windows and collects all their dy.
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 10.0
    y, state = max_pool2d_forward(x, 3, 1, 0)
    assert y.shape == (1, 1, 3, 3) and np.all(y == 10.0)
    dy = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    dx = max_pool2d_backward(dy, state)
    assert dx[0, 0, 2, 2] == dy.sum()
    assert np.count_nonzero(dx) == 1
    x = _distinct((2, 3, 6, 7), seed=4)
    y, state = max_pool2d_forward(x, 3, 1, 0)
    dy = randn(rng(5), *y.shape)
    num = finite_difference(lambda v: ref_max(v, 3, 1, 0)[0], x, dy, eps=1e-3)
    assert_close(max_pool2d_backward(dy, state), num, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1)])
def test_ties_take_the_first_maximum(k, s, p):
    x = np.zeros((1, 2, 6, 6), np.float32)
    x[0, 1] = np.array([[1, 2, 2, 0, 5, 5]] * 6, np.float32)
    _, state = max_pool2d_forward(x, k, s, p)
    _, arg = ref_max(x, k, s, p)
    np.testing.assert_array_equal(state.argmax, arg)
    # all equal: the first real element of each window (never a padded position)
    first = [cells[0][0] * 6 + cells[0][1] for _, _, cells in _windows(x.shape, k, s, p)]
    np.testing.assert_array_equal(state.argmax[0, 0].ravel(), first)


def test_padding_never_wins():
    x = np.full((1, 2, 4, 5), -np.inf, np.float32)
    x[0, 1] = -1e30
    y, state = max_pool2d_forward(x, 3, 2, 1)
    assert np.all(y[0, 0] == -np.inf) and np.all(y[0, 1] == np.float32(-1e30))
    _, arg = ref_max(x, 3, 2, 1)
    np.testing.assert_array_equal(state.argmax, arg)
    dx = max_pool2d_backward(np.ones_like(y), state)
    assert dx.sum() == y.size  # every window's gradient landed on a real element


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, (0, 1, 1, 0))])
def test_nan_propagates_and_takes_the_gradient(k, s, p):
    x = _distinct((1, 2, 6, 8), seed=6)
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 0, 0] = np.nan
    x[0, 1, 0, 1] = np.nan  # two NaNs in one window: the first wins
    x[0, 1, 5, 7] = 1e9     # a larger value after a NaN does not beat it
    x[0, 1, 4, 6] = np.nan
    y, state = max_pool2d_forward(x, k, s, p)
    ref, arg = ref_max(x, k, s, p)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y).any()
    np.testing.assert_array_equal(state.argmax, arg)
    dx = max_pool2d_backward(np.ones_like(y), state)
    assert dx[0, 0, 2, 3] == np.isnan(y[0, 0]).sum()
    # every NaN output points at a NaN input
    flat = x.reshape(1, 2, -1)
    picked = np.take_along_axis(flat, state.argmax.reshape(1, 2, -1), axis=2).reshape(y.shape)
    np.testing.assert_array_equal(np.isnan(picked), np.isnan(y))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_avg_forward_and_backward(shape, k, s, p, count_include_pad):
    x = randn(rng(7), *shape)
    y = avg_pool2d_forward(x, k, s, p, count_include_pad)
    assert y.dtype == np.float32
    assert_close(y, ref_avg(x, k, s, p, count_include_pad), atol=1e-6, rtol=1e-5)
    dy = randn(rng(8), *y.shape)
    dx = avg_pool2d_backward(dy, shape, k, s, p, count_include_pad)
    assert dx.shape == shape and dx.dtype == np.float32
    assert_close(dx, ref_avg_backward(dy, shape, k, s, p, count_include_pad), atol=1e-6, rtol=1e-5)
    if np.prod(shape) <= 600:
        num = finite_difference(
            lambda v: avg_pool2d_forward(v.astype(np.float32), k, s, p, count_include_pad), x, dy,
            eps=1e-2)
        assert_close(dx, num, atol=1e-3, rtol=1e-3, what="kernel forward")


def test_count_include_pad_differs_at_the_border():
    x = np.ones((1, 1, 4, 4), np.float32)
    inc = avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)
    exc = avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)
    assert inc[0, 0, 0, 0] == pytest.approx(4 / 9) and inc[0, 0, 1, 1] == 1.0
    np.testing.assert_allclose(exc, 1.0, rtol=1e-6)


@pytest.mark.parametrize("shape,k,s,p", [CASES[0], CASES[3], CASES[5]])
def test_float16_matches_float32(shape, k, s, p):
    x = randn(rng(9), *shape, dtype=np.float16)
    x32 = x.astype(np.float32)
    y16, st16 = max_pool2d_forward(x, k, s, p)
    y32, st32 = max_pool2d_forward(x32, k, s, p)
    assert y16.dtype == np.float16
    np.testing.assert_array_equal(y16, y32.astype(np.float16))
    np.testing.assert_array_equal(st16.argmax, st32.argmax)
    dy = randn(rng(10), *y16.shape, dtype=np.float16)
    dx16 = max_pool2d_backward(dy, st16)
    assert dx16.dtype == np.float16
    assert_close(dx16, max_pool2d_backward(dy.astype(np.float32), st32).astype(np.float16),
                 atol=1e-3, rtol=1e-3)
    a16 = avg_pool2d_forward(x, k, s, p, False)
    assert a16.dtype == np.float16
    assert_close(a16, avg_pool2d_forward(x32, k, s, p, False).astype(np.float16), atol=1e-3,
                 rtol=1e-3)
    g16 = avg_pool2d_backward(dy, shape, k, s, p)
    assert g16.dtype == np.float16
    assert_close(g16, avg_pool2d_backward(dy.astype(np.float32), shape, k, s, p).astype(np.float16),
                 atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("shape", [(64, 32, 28, 28), (64, 64, 14, 14)])
def test_mnist_shapes_with_threads(shape):
    x = randn(rng(11), *shape)
    y, state = max_pool2d_forward(x, 2, 2)
    N, C, H, W = shape
    blocks = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        N, C, H // 2, W // 2, 4)
    np.testing.assert_array_equal(y, blocks.max(-1))
    k = blocks.argmax(-1)  # first maximum in (top-left, top-right, bottom-left, bottom-right)
    i, j = np.meshgrid(np.arange(H // 2), np.arange(W // 2), indexing="ij")
    np.testing.assert_array_equal(state.argmax, (2 * i + k // 2) * W + 2 * j + k % 2)
    dx = max_pool2d_backward(y, state)
    assert dx.sum() == pytest.approx(y.sum(), rel=1e-4)
    a = avg_pool2d_forward(x, 2)
    assert_close(a, blocks.astype(np.float64).mean(-1), atol=1e-6, rtol=1e-5)


def test_bad_input():
    x = np.ones((2, 3, 8, 8), np.float32)
    op = "max_pool2d_forward"
    with raises_named(ValueError, op, "x"):
        max_pool2d_forward(np.ones((3, 8, 8), np.float32), 2)
    with raises_named(TypeError, op, "x"):
        max_pool2d_forward(x.astype(np.float64), 2)
    with raises_named(TypeError, op, "x"):
        max_pool2d_forward(x.astype(np.int32), 2)
    with raises_named(ValueError, op, "x"):
        max_pool2d_forward(np.ones((2, 3, 8, 16), np.float32)[..., ::2], 2)
    with raises_named(ValueError, op, "x"):
        max_pool2d_forward(np.ones((0, 3, 8, 8), np.float32), 2)
    for bad in (0, -1, (2, 0), (1, 2, 3), 2.0, True, "2"):
        with raises_named(ValueError, op, "kernel_size"):
            max_pool2d_forward(x, bad)
    for bad in (0, (1, -2), ()):
        with raises_named(ValueError, op, "stride"):
            max_pool2d_forward(x, 2, bad)
    for bad in (-1, (0, 0, 1), (1, 1, 1, -1)):
        with raises_named(ValueError, op, "padding"):
            max_pool2d_forward(x, 2, 2, bad)
    with raises_named(ValueError, op, "kernel_size"):
        max_pool2d_forward(x, 9)  # larger than the (padded) input
    with raises_named(ValueError, op, "padding"):
        max_pool2d_forward(x, 2, 2, 2)  # the first window is all padding
    with raises_named(ValueError, op, "padding"):
        max_pool2d_forward(np.ones((1, 1, 2, 2), np.float32), 2, 2, (0, 2, 0, 0))  # the last one
    with raises_named(ValueError, "avg_pool2d_forward", "padding"):
        avg_pool2d_forward(x, 3, 1, (0, 0, 3, 0))

    y, state = max_pool2d_forward(x, 2)
    arg = state.argmax.copy()
    op = "max_pool2d_backward"
    with raises_named(ValueError, op, "dy"):
        max_pool2d_backward(np.ones((2, 3, 4, 5), np.float32), state)
    with raises_named(TypeError, op, "dy"):
        max_pool2d_backward(y.astype(np.float16), state)
    _, ce_state = mnn.ops.softmax_cross_entropy_forward(np.zeros((2, 3), np.float32),
                                                        np.zeros(2, np.int32))
    for bad in (ce_state, None, "state", y):
        with raises_named(TypeError, op, "state"):
            max_pool2d_backward(y, bad)
    np.testing.assert_array_equal(state.argmax, arg)  # a failed call changes nothing

    op = "avg_pool2d_backward"
    dy = avg_pool2d_forward(x, 2)
    with raises_named(ValueError, op, "input_shape"):
        avg_pool2d_backward(dy, (2, 3, 8), 2)
    with raises_named(ValueError, op, "input_shape"):
        avg_pool2d_backward(dy, (2, 3, 0, 8), 2)
    with raises_named(ValueError, op, "dy"):
        avg_pool2d_backward(dy, (2, 3, 10, 8), 2)
    with raises_named(TypeError, op, "dy"):
        avg_pool2d_backward(dy.astype(np.int32), x.shape, 2)


def test_tensor_in_tensor_out():
    x = randn(rng(12), 2, 3, 6, 6)
    y, state = max_pool2d_forward(mnn.Tensor(x), 2)
    assert isinstance(y, mnn.Tensor) and y.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(y.numpy(), max_pool2d_forward(x, 2)[0])
    dx = max_pool2d_backward(mnn.Tensor(np.ones((2, 3, 3, 3), np.float32)), state)
    assert isinstance(dx, mnn.Tensor) and dx.shape == x.shape
    a = avg_pool2d_forward(mnn.Tensor(x), 3, 1, 1)
    assert isinstance(a, mnn.Tensor)
    np.testing.assert_array_equal(a.numpy(), avg_pool2d_forward(x, 3, 1, 1))


# ---------------------------------------------------------------- dilated max and L2-norm pooling

# (input shape, kernel_size, stride, padding, dilation): odd sizes, asymmetric padding,
# overlapping and gapped windows, rectangular kernels and dilations.
DILATED_CASES = [
    ((2, 3, 9, 8), 3, 2, 1, 2),
    ((1, 4, 11, 7), (3, 2), (1, 2), (2, 0, 1, 1), (2, 3)),
    ((2, 2, 7, 9), 2, 1, 0, (3, 1)),
    ((3, 2, 6, 5), (2, 3), 3, (1, 2, 0, 2), 1),  # dilation 1: the plain window
    ((1, 3, 13, 10), 3, (2, 3), (3, 1), (3, 2)),  # padding wider than a dilation step
]


def _dilated_windows(shape, k, s, p, d):
    """Yields (i, j, [(h, w), ...]): the real taps of each window in row-major window order."""
    kh, kw = (k, k) if isinstance(k, int) else k
    s = (kh, kw) if s is None else s
    sh, sw = (s, s) if isinstance(s, int) else s
    dh, dw = (d, d) if isinstance(d, int) else d
    top, bottom, left, right = _pads(p)
    H, W = shape[2:]
    oh = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (W + left + right - dw * (kw - 1) - 1) // sw + 1
    for i in range(oh):
        for j in range(ow):
            yield i, j, [(i * sh - top + a * dh, j * sw - left + b * dw) for a in range(kh) for b in range(kw)
                         if 0 <= i * sh - top + a * dh < H and 0 <= j * sw - left + b * dw < W], (oh, ow)


def dilated_max_ref(x, k, s, p, d):
    x = np.asarray(x, np.float64)
    out, arg = None, None
    for i, j, cells, (oh, ow) in _dilated_windows(x.shape, k, s, p, d):
        if out is None:
            out = np.zeros(x.shape[:2] + (oh, ow))
            arg = np.zeros(x.shape[:2] + (oh, ow), np.int64)
        vals = np.stack([x[:, :, h, w] for h, w in cells], axis=-1)
        first = np.argmax(vals, axis=-1)  # the first maximum, and NaN wins (np.argmax finds it first)
        out[:, :, i, j] = np.take_along_axis(vals, first[..., None], -1)[..., 0]
        arg[:, :, i, j] = np.array([h * x.shape[3] + w for h, w in cells])[first]
    return out, arg


def l2_ref(x, k, s, p, d):
    x = np.asarray(x, np.float64)
    out = None
    for i, j, cells, (oh, ow) in _dilated_windows(x.shape, k, s, p, d):
        if out is None:
            out = np.zeros(x.shape[:2] + (oh, ow))
        out[:, :, i, j] = np.sqrt(sum(x[:, :, h, w] ** 2 for h, w in cells))
    return out


def l2_grad_ref(dy, x, k, s, p, d):
    """dx = sum over windows of dy * x / y (the derivative of sqrt(sum x^2))."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    y = l2_ref(x, k, s, p, d)
    dx = np.zeros_like(x)
    for i, j, cells, _ in _dilated_windows(x.shape, k, s, p, d):
        q = np.where(y[:, :, i, j] != 0, dy[:, :, i, j] / np.where(y[:, :, i, j] != 0, y[:, :, i, j], 1), 0)
        for h, w in cells:
            dx[:, :, h, w] += q * x[:, :, h, w]
    return dx


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape,k,s,p,d", DILATED_CASES)
def test_dilated_max_forward_and_backward(shape, k, s, p, d, dtype):
    x = randn(rng(20), *shape, dtype=dtype)
    x0 = x.copy()
    y, state = mnn.ops.dilated_max_pool2d_forward(x, k, s, p, d)
    ref, arg = dilated_max_ref(x, k, s, p, d)
    np.testing.assert_array_equal(x, x0)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref.astype(dtype))  # max selects: exact
    np.testing.assert_array_equal(state.argmax, arg)
    assert state.input_shape == shape
    dy = randn(rng(21), *y.shape, dtype=dtype)
    dx = max_pool2d_backward(dy, state)
    rdx = np.zeros(shape)
    flat = rdx.reshape(shape[0] * shape[1], -1)
    for pl, (a, g) in enumerate(zip(arg.reshape(len(flat), -1), dy.astype(np.float64).reshape(len(flat), -1))):
        np.add.at(flat[pl], a, g)
    assert_close(dx, rdx, dtype, what="dilated max dx")
    if dtype == np.float32 and np.prod(shape) <= 200:
        fd = finite_difference(lambda v: dilated_max_ref(v, k, s, p, d)[0], x, dy)
        assert_close(dx, fd, atol=1e-4, rtol=1e-4)  # random inputs: no ties, no kinks


def test_dilated_max_with_dilation_one_is_max_pool():
    x = randn(rng(22), 2, 3, 9, 7)
    y, st = mnn.ops.dilated_max_pool2d_forward(x, 3, 2, (1, 0, 2, 1), 1)
    y0, st0 = max_pool2d_forward(x, 3, 2, (1, 0, 2, 1))
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(st.argmax, st0.argmax)


def test_dilated_max_ties_padding_and_nan():
    x = np.zeros((1, 1, 5, 5), np.float32)  # all ties: the first real tap wins
    y, st = mnn.ops.dilated_max_pool2d_forward(x, 2, 1, 1, 2)
    _, arg = dilated_max_ref(x, 2, 1, 1, 2)
    np.testing.assert_array_equal(st.argmax, arg)
    neg = -np.ones((1, 1, 5, 5), np.float32)  # padding never wins against negative values
    y, _ = mnn.ops.dilated_max_pool2d_forward(neg, 2, 1, 1, 2)
    assert (y == -1).all()
    x = randn(rng(23), 1, 2, 7, 7)
    x[0, 1, 2, 4] = np.nan
    y, st = mnn.ops.dilated_max_pool2d_forward(x, 3, 1, 1, 2)
    ref, arg = dilated_max_ref(x, 3, 1, 1, 2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[0, 1]).any() and not np.isnan(y[0, 0]).any()
    dx = max_pool2d_backward(np.ones_like(y), st)
    assert dx[0, 1, 2, 4] == np.isnan(ref[0, 1]).sum()


def test_dilated_max_pytorch_agrees_if_installed():
    torch = pytest.importorskip("torch")
    x = randn(rng(24), 2, 3, 12, 11)
    y, st = mnn.ops.dilated_max_pool2d_forward(x, 3, (2, 1), 1, (2, 3))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, (2, 1), 1, (2, 3))
    dy = randn(rng(25), *y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    assert_close(max_pool2d_backward(dy, st), xt.grad.numpy(), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape,k,s,p,d", DILATED_CASES)
def test_l2_forward_and_backward(shape, k, s, p, d, dtype):
    x = randn(rng(26), *shape, dtype=dtype)
    x0 = x.copy()
    y = mnn.ops.l2_pool2d_forward(x, k, s, p, d)
    np.testing.assert_array_equal(x, x0)
    assert y.dtype == dtype
    assert_close(y, l2_ref(x, k, s, p, d), dtype, what="l2 forward")
    dy = randn(rng(27), *y.shape, dtype=dtype)
    dx = mnn.ops.l2_pool2d_backward(dy, x, y, k, s, p, d)
    # float16: y is stored rounded, and dx reads it back
    assert_close(dx, l2_grad_ref(dy, x, k, s, p, d), dtype, rtol=None if dtype == np.float32 else 5e-3,
                 what="l2 backward")
    if dtype == np.float32 and np.prod(shape) <= 200:
        fd = finite_difference(lambda v: l2_ref(v, k, s, p, d), x, dy)
        assert_close(dx, fd, atol=1e-4, rtol=1e-4)
        own = finite_difference(lambda v: mnn.ops.l2_pool2d_forward(v.astype(np.float32), k, s, p, d), x, dy,
                                eps=1e-2)
        assert_close(dx, own, atol=2e-3, rtol=2e-3)


def test_l2_zero_window_nan_and_pytorch():
    x = randn(rng(28), 1, 2, 6, 6)
    x[0, 0, :2, :2] = 0  # window (0, 0) of channel 0 is all zeros: y = 0, gradient 0
    y = mnn.ops.l2_pool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == 0
    dx = mnn.ops.l2_pool2d_backward(np.ones_like(y), x, y, 2)
    assert np.isfinite(dx).all() and (dx[0, 0, :2, :2] == 0).all()
    x[0, 1, 3, 3] = np.nan
    y = mnn.ops.l2_pool2d_forward(x, 2)
    assert np.isnan(y[0, 1, 1, 1]) and np.isnan(y).sum() == 1
    torch = pytest.importorskip("torch")
    x = randn(rng(29), 2, 3, 9, 8)
    y = mnn.ops.l2_pool2d_forward(x, (3, 2), (2, 1))
    np.testing.assert_allclose(y, torch.nn.functional.lp_pool2d(torch.tensor(x), 2, (3, 2), (2, 1)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_dilated_and_l2_bad_input():
    x = np.ones((2, 3, 7, 7), np.float32)
    y = mnn.ops.l2_pool2d_forward(x, 2)
    dmax, l2f, l2b = mnn.ops.dilated_max_pool2d_forward, mnn.ops.l2_pool2d_forward, mnn.ops.l2_pool2d_backward
    D, F, B = "dilated_max_pool2d_forward", "l2_pool2d_forward", "l2_pool2d_backward"
    calls = [
        (ValueError, D, "dilation", lambda: dmax(x, 2, 1, 0, 0)),
        (ValueError, D, "dilation", lambda: dmax(x, 2, 1, 0, (1, 2, 3))),
        (ValueError, D, "dilation", lambda: dmax(x, 2, 1, 0, 1.5)),
        (ValueError, D, "dilated kernel", lambda: dmax(x, 3, 1, 0, 4)),
        (ValueError, D, "only padding", lambda: dmax(np.ones((1, 1, 1, 1), np.float32), 2, 1, 2, 3)),
        (ValueError, D, "kernel_size", lambda: dmax(x, 0, 1, 0, 2)),
        (ValueError, D, "x", lambda: dmax(x[0], 2, 1, 0, 2)),
        (TypeError, D, "x", lambda: dmax(x.astype(np.int32), 2, 1, 0, 2)),
        (ValueError, F, "stride", lambda: l2f(x, 2, 0)),
        (ValueError, F, "padding", lambda: l2f(x, 2, 1, -1)),
        (ValueError, F, "x", lambda: l2f(np.ones((2, 3, 0, 7), np.float32), 2)),
        (TypeError, F, "x", lambda: l2f(x.astype(np.float64), 2)),
        (ValueError, F, "x", lambda: l2f(np.ones((2, 3, 7, 14), np.float32)[..., ::2], 2)),
        (ValueError, B, "dy", lambda: l2b(y[:, :, :2], x, y, 2)),
        (ValueError, B, "y", lambda: l2b(y, x, y[:, :, :2], 2)),
        (TypeError, B, "dy", lambda: l2b(y.astype(np.float16), x, y, 2)),
        (TypeError, B, "y", lambda: l2b(y, x, y.astype(np.float16), 2)),
        (ValueError, B, "x", lambda: l2b(y, x[0], y, 2)),
    ]
    x0, y0 = x.copy(), y.copy()
    for exc, op, arg, call in calls:
        with raises_named(exc, op, arg):
            call()
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
