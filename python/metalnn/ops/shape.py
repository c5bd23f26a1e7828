"""Resampling and shape ops over NCHW images, each with its gradient.

As MPSCNNUpsamplingNearest / MPSCNNUpsamplingBilinear (integer scale factors),
MPSNNConcatenationNode (feature channels), MPSNNReshapeNode, MPSNNPadNode (zero, edge,
reflect), crop/slice, the data converters MPSImageCopyToMatrix / MPSMatrixCopyToImage and the
matrix transpose.
float32 or float16 storage; copies keep float16 bits exactly, sums (gradients, bilinear
weights) are computed in float32 and rounded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from .. import _core
from ._util import ArrayLike

IntOrPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], tuple[int, int, int, int]]

#: Padding modes of pad_forward.
PAD_MODES = ("zero", "edge", "reflect")


def upsample_nearest_forward(x: ArrayLike, scale_factor: IntOrPair) -> ArrayLike:
    """y[n, c, i, j] = x[n, c, i // sH, j // sW]; y is (N, C, H*sH, W*sW).

    ``scale_factor`` is an int or ``(sH, sW)``, integers >= 1.
    """
    return _core.ops.upsample_nearest_forward(x, scale_factor)


def upsample_nearest_backward(dy: ArrayLike, scale_factor: IntOrPair) -> ArrayLike:
    """dx[n, c, h, w] = sum_{r < sH, s < sW} dy[n, c, h*sH + r, w*sW + s] (dy's H, W divide by the scale)."""
    return _core.ops.upsample_nearest_backward(dy, scale_factor)


def upsample_bilinear_forward(x: ArrayLike, scale_factor: IntOrPair, align_corners: bool = False) -> ArrayLike:
    """Bilinear interpolation to (N, C, H*sH, W*sW).

    Output row i samples source row ``src = i*(H-1)/(H_out-1)`` with ``align_corners``
    (corner pixels line up; 0 when H_out = 1), else ``src = max((i + 0.5)/sH - 0.5, 0)``
    (pixel centres line up). With ``h0 = floor(src)``, ``h1 = min(h0 + 1, H - 1)``,
    ``l = src - h0`` (likewise w0, w1, m for columns)::

        y = (1-l) * ((1-m) x[h0, w0] + m x[h0, w1]) + l * ((1-m) x[h1, w0] + m x[h1, w1])
    """
    return _core.ops.upsample_bilinear_forward(x, scale_factor, align_corners)


def upsample_bilinear_backward(dy: ArrayLike, scale_factor: IntOrPair, align_corners: bool = False) -> ArrayLike:
    """dx = the transpose of the forward interpolation applied to dy: each dy[i, j] adds
    its four weights (1-l)(1-m), (1-l)m, l(1-m), lm times dy to dx[h0|h1, w0|w1]."""
    return _core.ops.upsample_bilinear_backward(dy, scale_factor, align_corners)


def concat_forward(xs: Sequence[ArrayLike]) -> ArrayLike:
    """y = the inputs stacked along feature channels: y[:, o_k : o_k + C_k] = xs[k] with
    o_k = C_0 + ... + C_{k-1}. Every input has the batch and spatial size of xs[0]."""
    return _core.ops.concat_forward(xs)


def concat_backward(dy: ArrayLike, channels: Sequence[int]) -> list[ArrayLike]:
    """The per-source gradients: dx_k = dy[:, o_k : o_k + C_k] for ``channels`` = (C_0, C_1, ...)."""
    return _core.ops.concat_backward(dy, tuple(channels))


def reshape_forward(x: ArrayLike, shape: Sequence[int]) -> ArrayLike:
    """x viewed with another shape of the same element count (row-major, no copy); one
    entry may be -1 (inferred). Flatten: ``reshape_forward(x, (N, -1))``."""
    return _core.ops.reshape_forward(x, tuple(shape))


def reshape_backward(dy: ArrayLike, input_shape: Sequence[int]) -> ArrayLike:
    """dx = dy viewed with the forward input's shape (no copy)."""
    return _core.ops.reshape_backward(dy, tuple(input_shape))


def pad_forward(x: ArrayLike, padding: Padding, mode: str = "zero",
                channels: tuple[int, int] = (0, 0)) -> ArrayLike:
    """Pads an (N, C, H, W) image to (N, C + front + back, H + top + bottom, W + left + right).

    ``y[n, k, i, j] = x[n, m_C(k - front), m_H(i - top), m_W(j - left)]`` where, for an
    index v along an axis of size S, ``m(v) = v`` inside ``[0, S)`` and outside it:
    ``"zero"``: the value is 0; ``"edge"``: ``clamp(v, 0, S-1)``; ``"reflect"``: the mirror
    image without repeating the edge (``-1 -> 1``, ``S -> S-2``; padding must be < S).
    ``padding`` is an int, ``(pH, pW)`` or ``(top, bottom, left, right)``; ``channels`` is
    ``(front, back)`` feature-channel padding.
    """
    return _core.ops.pad_forward(x, padding, mode, tuple(channels))


def pad_backward(dy: ArrayLike, input_shape: Sequence[int], padding: Padding, mode: str = "zero",
                 channels: tuple[int, int] = (0, 0)) -> ArrayLike:
    """dx[p] = sum of dy over every output position whose value was read from input position p."""
    return _core.ops.pad_backward(dy, tuple(input_shape), padding, mode, tuple(channels))


def crop_forward(x: ArrayLike, offset: Sequence[int], size: Sequence[int]) -> ArrayLike:
    """y = x[:, c0 : c0 + C', h0 : h0 + H', w0 : w0 + W'] with ``offset`` = (c0, h0, w0) and
    ``size`` = (C', H', W'); the window must lie inside x (a slice of channels and/or space)."""
    return _core.ops.crop_forward(x, tuple(offset), tuple(size))


def crop_backward(dy: ArrayLike, input_shape: Sequence[int], offset: Sequence[int]) -> ArrayLike:
    """dx = zeros(input_shape) with dx[:, c0 : c0 + C', h0 : h0 + H', w0 : w0 + W'] = dy."""
    return _core.ops.crop_backward(dy, tuple(input_shape), tuple(offset))


def image_to_matrix(x: ArrayLike) -> ArrayLike:
    """(N, C, H, W) images -> an (N, C*H*W) matrix: row n holds image n, column
    ``(c*H + h)*W + w`` its element (c, h, w) (MPSImageCopyToMatrix with the
    feature-channels x height x width layout). A view: no copy. Its gradient is
    :func:`matrix_to_image` of the matrix gradient."""
    return _core.ops.image_to_matrix(x)


def matrix_to_image(m: ArrayLike, image_shape: Sequence[int]) -> ArrayLike:
    """(N, C*H*W) matrix -> (N, C, H, W) images with ``image_shape`` = (C, H, W), the inverse
    of :func:`image_to_matrix` (MPSMatrixCopyToImage). A view: no copy."""
    return _core.ops.matrix_to_image(m, tuple(image_shape))


def transpose_matrix_forward(x: ArrayLike) -> ArrayLike:
    """y = x^T: an (R, C) matrix -> its (C, R) transpose, ``y[j, i] = x[i, j]`` (a copy; float16
    bits are kept). An (N, C, 1, L) image viewed as the (N*C, L) matrix transposes to the
    (L, N*C) matrix, i.e. the (L, N, C) sequence an RNN reads."""
    return _core.ops.transpose_matrix_forward(x)


def transpose_matrix_backward(dy: ArrayLike) -> ArrayLike:
    """dx = dy^T: the gradient of a transpose, ``dx[i, j] = dy[j, i]`` for dy of shape (C, R)."""
    return _core.ops.transpose_matrix_backward(dy)
