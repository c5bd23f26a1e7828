"""Resampling and shape ops: nearest / bilinear upsampling, concatenation, reshape, pad,
crop, the image <-> matrix converters and the matrix transpose, against numpy references written from the math,
finite differences, float16, odd sizes and bad input."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn.ops import (
    concat_backward,
    concat_forward,
    crop_backward,
    crop_forward,
    image_to_matrix,
    matrix_to_image,
    pad_backward,
    pad_forward,
    reshape_backward,
    reshape_forward,
    transpose_matrix_backward,
    transpose_matrix_forward,
    upsample_bilinear_backward,
    upsample_bilinear_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)

from helpers import DTYPES, assert_close, finite_difference, raises_named, randn, rng

# ---------------------------------------------------------------- references


def ref_nearest(x, sh, sw):
    return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)


def bilinear_matrix(n_in, scale, align):
    """(n_out, n_in) interpolation weights along one axis, from the formula in the docstring."""
    n_out = n_in * scale
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        if align:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) / scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[i, i0] += 1 - lam
        m[i, i1] += lam
    return m


def ref_bilinear(x, sh, sw, align):
    mh, mw = bilinear_matrix(x.shape[2], sh, align), bilinear_matrix(x.shape[3], sw, align)
    return np.einsum("ih,nchw,jw->ncij", mh, np.asarray(x, np.float64), mw)


def ref_bilinear_backward(dy, sh, sw, align):
    h, w = dy.shape[2] // sh, dy.shape[3] // sw
    mh, mw = bilinear_matrix(h, sh, align), bilinear_matrix(w, sw, align)
    return np.einsum("ih,ncij,jw->nchw", mh, np.asarray(dy, np.float64), mw)


NP_MODE = {"zero": "constant", "edge": "edge", "reflect": "reflect"}


def ref_pad(x, pads, mode, channels=(0, 0)):
    top, bottom, left, right = pads
    return np.pad(np.asarray(x, np.float64), ((0, 0), channels, (top, bottom), (left, right)), mode=NP_MODE[mode])


def index_map(size, before, after, mode):
    """Source index of every padded position along one axis (-1: a zero)."""
    if mode == "zero":
        return np.pad(np.arange(size), (before, after), mode="constant", constant_values=-1)
    return np.pad(np.arange(size), (before, after), mode=NP_MODE[mode])


def ref_pad_backward(dy, input_shape, pads, mode, channels=(0, 0)):
    n, c, h, w = input_shape
    top, bottom, left, right = pads
    mc, mh, mw = (index_map(c, *channels, mode), index_map(h, top, bottom, mode), index_map(w, left, right, mode))
    dx = np.zeros(input_shape)
    for k, ck in enumerate(mc):
        for i, hi in enumerate(mh):
            for j, wj in enumerate(mw):
                if ck >= 0 and hi >= 0 and wj >= 0:
                    dx[:, ck, hi, wj] += dy[:, k, i, j]
    return dx


# ---------------------------------------------------------------- upsampling

UP_CASES = [((2, 3, 5, 7), (2, 2)), ((1, 4, 3, 9), (3, 1)), ((3, 2, 1, 1), (2, 5)), ((2, 1, 6, 4), (1, 1))]


@pytest.mark.parametrize("shape,scale", UP_CASES)
def test_nearest(shape, scale):
    x = randn(rng(0), *shape)
    y = upsample_nearest_forward(x, scale)
    np.testing.assert_array_equal(y, ref_nearest(x, *scale))
    dy = randn(rng(1), *y.shape)
    dx = upsample_nearest_backward(dy, scale)
    n, c, h, w = shape
    ref = dy.astype(np.float64).reshape(n, c, h, scale[0], w, scale[1]).sum(axis=(3, 5))
    assert_close(dx, ref)
    fd = finite_difference(lambda v: ref_nearest(v, *scale), x, dy)
    assert_close(dx, fd, rtol=1e-4, atol=1e-3)


def test_nearest_int_scale_and_float16():
    x = randn(rng(2), 2, 3, 5, 3, dtype=np.float16)
    y = upsample_nearest_forward(x, 3)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, ref_nearest(x, 3, 3))  # copies keep float16 bits
    dx = upsample_nearest_backward(y, 3)
    assert_close(dx, 9 * x.astype(np.float64), np.float16)


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("shape,scale", UP_CASES)
def test_bilinear(shape, scale, align):
    x = randn(rng(3), *shape)
    y = upsample_bilinear_forward(x, scale, align)
    assert_close(y, ref_bilinear(x, *scale, align), what="bilinear forward")
    dy = randn(rng(4), *y.shape)
    dx = upsample_bilinear_backward(dy, scale, align)
    assert_close(dx, ref_bilinear_backward(dy, *scale, align), rtol=1e-5, atol=1e-4, what="bilinear backward")


@pytest.mark.parametrize("align", [False, True])
def test_bilinear_finite_differences(align):
    x = randn(rng(5), 1, 2, 3, 4)
    dy = randn(rng(6), 1, 2, 6, 12)
    dx = upsample_bilinear_backward(dy, (2, 3), align)
    fd = finite_difference(lambda v: ref_bilinear(v, 2, 3, align), x, dy)
    assert_close(dx, fd, rtol=1e-4, atol=1e-3)
    # The kernel's own forward: directional derivative along a random direction.
    v = randn(rng(7), *x.shape)
    eps = 1e-2
    slope = (np.sum(upsample_bilinear_forward(x + eps * v, (2, 3), align) * dy, dtype=np.float64)
             - np.sum(upsample_bilinear_forward(x - eps * v, (2, 3), align) * dy, dtype=np.float64)) / (2 * eps)
    assert abs(slope - np.sum(dx * v, dtype=np.float64)) < 1e-3 * max(1.0, abs(slope))


def test_bilinear_matches_torch_if_installed():
    torch = pytest.importorskip("torch")
    x = randn(rng(8), 2, 3, 5, 7)
    for align in (False, True):
        y = upsample_bilinear_forward(x, (2, 3), align)
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=(2, 3), mode="bilinear",
                                              align_corners=align).numpy()
        assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bilinear_float16(dtype):
    x = randn(rng(9), 2, 3, 7, 5, dtype=dtype)
    y = upsample_bilinear_forward(x, 2, True)
    assert y.dtype == dtype
    assert_close(y, upsample_bilinear_forward(x.astype(np.float32), 2, True), dtype)
    dx = upsample_bilinear_backward(y, 2, True)
    assert_close(dx, upsample_bilinear_backward(y.astype(np.float32), 2, True), dtype)


def test_upsample_nan_propagates():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = np.nan
    y = upsample_bilinear_forward(x, 2)
    assert np.isnan(y).any() and not np.isnan(y).all()
    assert np.isnan(upsample_nearest_forward(x, 2)).sum() == 4


def test_upsample_bad_input():
    x = randn(rng(), 2, 3, 4, 5)
    with raises_named(ValueError, "upsample_nearest_forward", "scale_factor"):
        upsample_nearest_forward(x, 0)
    with raises_named(ValueError, "upsample_bilinear_forward", "scale_factor"):
        upsample_bilinear_forward(x, (2, 3, 4))
    with raises_named(ValueError, "upsample_nearest_forward", "scale_factor"):
        upsample_nearest_forward(x, 1.5)
    with raises_named(ValueError, "upsample_bilinear_forward", "x"):
        upsample_bilinear_forward(x[0], 2)
    with raises_named(TypeError, "upsample_nearest_forward", "x"):
        upsample_nearest_forward(x.astype(np.int32), 2)
    with raises_named(ValueError, "upsample_nearest_backward", "multiple of scale_factor"):
        upsample_nearest_backward(x, 2)
    with raises_named(ValueError, "upsample_nearest_forward", "positive sizes"):
        upsample_nearest_forward(np.zeros((1, 0, 2, 2), np.float32), 2)


# ---------------------------------------------------------------- concatenation


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat(dtype):
    r = rng(10)
    xs = [randn(r, 3, c, 5, 7, dtype=dtype) for c in (1, 4, 3)]
    y = concat_forward(xs)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=1))
    dy = randn(r, *y.shape, dtype=dtype)
    parts = concat_backward(dy, [1, 4, 3])
    assert len(parts) == 3
    for p, ref in zip(parts, np.split(dy, [1, 5], axis=1)):
        np.testing.assert_array_equal(p, ref)
    assert concat_forward(xs[:1]).shape == xs[0].shape


def test_concat_bad_input():
    a, b = randn(rng(), 2, 3, 4, 5), randn(rng(), 2, 2, 4, 6)
    with raises_named(ValueError, "concat_forward", "xs[1]"):
        concat_forward([a, b])
    with raises_named(TypeError, "concat_forward", "xs[1]"):
        concat_forward([a, a.astype(np.float16)])
    with raises_named(ValueError, "concat_forward", "xs"):
        concat_forward([])
    with raises_named(TypeError, "concat_forward", "xs"):
        concat_forward(a)
    with raises_named(ValueError, "concat_backward", "channels"):
        concat_backward(a, [1, 1])
    with raises_named(ValueError, "concat_backward", "channels"):
        concat_backward(a, [4, -1])


# ---------------------------------------------------------------- reshape and converters


def test_reshape_is_a_view():
    x = randn(rng(11), 3, 4, 5, 7)
    y = reshape_forward(x, (3, -1))
    assert y.shape == (3, 140) and np.shares_memory(x, y)
    np.testing.assert_array_equal(y, x.reshape(3, -1))
    dx = reshape_backward(y, x.shape)
    assert dx.shape == x.shape and np.shares_memory(dx, x)
    with raises_named(ValueError, "reshape_forward", "shape"):
        reshape_forward(x, (8, -1))
    with raises_named(ValueError, "reshape_forward", "-1"):
        reshape_forward(x, (-1, -1))
    with raises_named(ValueError, "reshape_forward", "shape"):
        reshape_forward(x, (3, 0, 140))
    with raises_named(ValueError, "reshape_backward", "input_shape"):
        reshape_backward(y, (3, 4, 5, 6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_image_matrix_round_trip(dtype):
    x = randn(rng(12), 3, 4, 5, 7, dtype=dtype)
    m = image_to_matrix(x)
    assert m.shape == (3, 140) and m.dtype == dtype and np.shares_memory(m, x)
    # Row n, column (c*H + h)*W + w holds x[n, c, h, w].
    for n, c, h, w in [(0, 0, 0, 0), (2, 3, 4, 6), (1, 2, 1, 5)]:
        assert m[n, (c * 5 + h) * 7 + w] == x[n, c, h, w]
    back = matrix_to_image(m, (4, 5, 7))
    np.testing.assert_array_equal(back, x)
    with raises_named(ValueError, "matrix_to_image", "columns"):
        matrix_to_image(m, (4, 5, 6))
    with raises_named(ValueError, "matrix_to_image", "m"):
        matrix_to_image(x, (4, 5, 7))
    with raises_named(ValueError, "image_to_matrix", "x"):
        image_to_matrix(m)
    with raises_named(ValueError, "matrix_to_image", "image_shape"):
        matrix_to_image(m, (140,))


# ---------------------------------------------------------------- padding

PAD_CASES = [
    ((2, 3, 5, 7), (1, 2, 3, 0), (0, 0)),
    ((1, 4, 6, 5), (2, 2, 1, 1), (1, 2)),
    ((2, 3, 4, 4), (3, 3, 3, 3), (0, 0)),
    ((3, 2, 1, 7), (0, 0, 2, 4), (1, 0)),
]


@pytest.mark.parametrize("mode", ["zero", "edge", "reflect"])
@pytest.mark.parametrize("shape,pads,channels", PAD_CASES)
def test_pad(shape, pads, channels, mode):
    if mode == "reflect" and (max(pads[:2]) >= shape[2] or max(pads[2:]) >= shape[3] or max(channels) >= shape[1]):
        return  # covered by test_pad_bad_input
    x = randn(rng(13), *shape)
    y = pad_forward(x, pads, mode, channels)
    np.testing.assert_array_equal(y, ref_pad(x, pads, mode, channels))
    dy = randn(rng(14), *y.shape)
    dx = pad_backward(dy, shape, pads, mode, channels)
    assert_close(dx, ref_pad_backward(dy.astype(np.float64), shape, pads, mode, channels))
    if np.prod(shape) <= 60:
        fd = finite_difference(lambda v: ref_pad(v, pads, mode, channels), x, dy)
        assert_close(dx, fd, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("mode", ["zero", "edge", "reflect"])
def test_pad_float16_and_forms(mode):
    x = randn(rng(15), 2, 3, 5, 6, dtype=np.float16)
    y = pad_forward(x, 2, mode)
    np.testing.assert_array_equal(y, ref_pad(x, (2, 2, 2, 2), mode).astype(np.float16))
    np.testing.assert_array_equal(pad_forward(x, (1, 2), mode), ref_pad(x, (1, 1, 2, 2), mode).astype(np.float16))
    dy = randn(rng(16), *y.shape, dtype=np.float16)
    dx = pad_backward(dy, x.shape, 2, mode)
    assert dx.dtype == np.float16
    assert_close(dx, ref_pad_backward(dy.astype(np.float64), x.shape, (2, 2, 2, 2), mode), np.float16)


def test_pad_bad_input():
    x = randn(rng(), 2, 3, 4, 5)
    with raises_named(ValueError, "pad_forward", "mode"):
        pad_forward(x, 1, "wrap")
    with raises_named(ValueError, "pad_forward", "reflect padding"):
        pad_forward(x, (4, 0, 0, 0), "reflect")
    with raises_named(ValueError, "pad_forward", "padding"):
        pad_forward(x, (1, 2, 3))
    with raises_named(ValueError, "pad_forward", "padding"):
        pad_forward(x, -1)
    with raises_named(ValueError, "pad_forward", "channels"):
        pad_forward(x, 1, "zero", (1, 2, 3))
    with raises_named(ValueError, "pad_backward", "dy"):
        pad_backward(x, (2, 3, 4, 5), 1)
    with raises_named(TypeError, "pad_forward", "x"):
        pad_forward(x.astype(np.int32), 1)


# ---------------------------------------------------------------- crop


@pytest.mark.parametrize("dtype", DTYPES)
def test_crop(dtype):
    x = randn(rng(17), 3, 5, 9, 7, dtype=dtype)
    y = crop_forward(x, (1, 2, 3), (3, 5, 4))
    np.testing.assert_array_equal(y, x[:, 1:4, 2:7, 3:7])
    dy = randn(rng(18), *y.shape, dtype=dtype)
    dx = crop_backward(dy, x.shape, (1, 2, 3))
    ref = np.zeros(x.shape, dtype)
    ref[:, 1:4, 2:7, 3:7] = dy
    np.testing.assert_array_equal(dx, ref)
    small = randn(rng(19), 1, 2, 2, 3)
    fd = finite_difference(lambda v: v[:, :1, 1:, 1:3], small, np.ones((1, 1, 1, 2)))
    assert_close(crop_backward(np.ones((1, 1, 1, 2), np.float32), small.shape, (0, 1, 1)), fd, atol=1e-6)


def test_crop_bad_input():
    x = randn(rng(), 2, 3, 4, 5)
    with raises_named(ValueError, "crop_forward", "outside"):
        crop_forward(x, (1, 0, 0), (3, 4, 5))
    with raises_named(ValueError, "crop_forward", "offset"):
        crop_forward(x, (-1, 0, 0), (1, 1, 1))
    with raises_named(ValueError, "crop_forward", "size"):
        crop_forward(x, (0, 0, 0), (1, 0, 1))
    with raises_named(ValueError, "crop_forward", "offset"):
        crop_forward(x, (0, 0), (1, 1, 1))
    with raises_named(ValueError, "crop_backward", "outside"):
        crop_backward(x, (2, 3, 4, 5), (0, 1, 0))
    with raises_named(ValueError, "crop_backward", "batch"):
        crop_backward(x, (3, 3, 4, 5), (0, 0, 0))


def test_tensor_in_tensor_out():
    x = randn(rng(20), 2, 3, 4, 5)
    t = mnn.Tensor(x)
    y = upsample_nearest_forward(t, 2)
    assert isinstance(y, mnn.Tensor)
    np.testing.assert_array_equal(np.asarray(y), ref_nearest(x, 2, 2))


# ---------------------------------------------------------------- matrix transpose

TRANSPOSE_SHAPES = [(7, 13), (1, 29), (29, 1), (1, 1), (33, 65), (100, 37), (64, 96)]


def ref_transpose(x):
    """y[j, i] = x[i, j], element by element."""
    y = np.empty((x.shape[1], x.shape[0]), x.dtype)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[j, i] = x[i, j]
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", TRANSPOSE_SHAPES)
def test_transpose_matrix(shape, dtype):
    x = randn(rng(21), *shape, dtype=dtype)
    y = transpose_matrix_forward(x)
    assert y.shape == shape[::-1] and y.dtype == dtype
    # A copy: the storage bits move unchanged.
    np.testing.assert_array_equal(y.view(np.uint8), ref_transpose(x).view(np.uint8))
    dy = randn(rng(22), *shape[::-1], dtype=dtype)
    dx = transpose_matrix_backward(dy)
    assert dx.shape == shape
    np.testing.assert_array_equal(dx.view(np.uint8), ref_transpose(dy).view(np.uint8))


def test_transpose_matrix_gradient_is_the_adjoint():
    """<dy, T(x)> = <T'(dy), x> for the forward T and the gradient T' (float64 sums)."""
    r = rng(23)
    x, dy = randn(r, 45, 70), randn(r, 70, 45)
    lhs = np.sum(dy.astype(np.float64) * transpose_matrix_forward(x))
    rhs = np.sum(transpose_matrix_backward(dy).astype(np.float64) * x)
    assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs))
    np.testing.assert_array_equal(transpose_matrix_backward(transpose_matrix_forward(x)), x)


def test_transpose_matrix_keeps_nan_inf_bits():
    x = np.arange(6 * 9, dtype=np.float16).reshape(6, 9)
    bits = x.view(np.uint16)
    bits[1, 2], bits[4, 7], bits[5, 0] = 0x7E01, 0x7C00, 0xFE33  # NaN payloads, +inf
    np.testing.assert_array_equal(transpose_matrix_forward(x).view(np.uint16), bits.T)
    x32 = x.astype(np.float32)
    x32[3, 3] = -np.inf
    np.testing.assert_array_equal(transpose_matrix_forward(x32).view(np.uint32), x32.view(np.uint32).T)


def test_transpose_matrix_image_to_sequence():
    """An (N, C, 1, L) image as the (N*C, L) matrix transposes to the (L, N, C) sequence."""
    n, c, length = 3, 5, 11
    x = randn(rng(24), n, c, 1, length)
    s = transpose_matrix_forward(x.reshape(n * c, length)).reshape(length, n, c)
    np.testing.assert_array_equal(s, x[:, :, 0, :].transpose(2, 0, 1))


def test_transpose_matrix_empty_and_tensor():
    assert transpose_matrix_forward(np.zeros((0, 4), np.float32)).shape == (4, 0)
    x = randn(rng(25), 9, 4)
    y = transpose_matrix_forward(mnn.Tensor(x))
    assert isinstance(y, mnn.Tensor)
    np.testing.assert_array_equal(np.asarray(y), x.T)


def test_transpose_matrix_bad_input():
    with raises_named(ValueError, "transpose_matrix_forward", "x"):
        transpose_matrix_forward(np.zeros((2, 3, 4), np.float32))
    with raises_named(ValueError, "transpose_matrix_forward", "x"):
        transpose_matrix_forward(np.zeros(5, np.float32))
    with raises_named(TypeError, "transpose_matrix_forward", "x"):
        transpose_matrix_forward(np.zeros((2, 3), np.int32))
    with raises_named(TypeError, "transpose_matrix_backward", "dy"):
        transpose_matrix_backward(np.zeros((2, 3), np.float64))
    with raises_named(ValueError, "transpose_matrix_backward", "dy"):
        transpose_matrix_backward(np.zeros((4, 3), np.float32).T)

