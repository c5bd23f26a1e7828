"""Winograd convolution on the CPU (METALNN_CONV_ALGO=winograd|im2col|auto).

Every tile size built (F(2x2,3x3), F(4x4,3x3), F(6x6,3x3), F(2x2,5x5), F(4x4,5x5)) is
picked through the output size, and forward, input gradient and weight gradient are
compared with the float64 reference of test_conv. The transform matrices are checked at
compile time (A^T[(G g).(B^T d)] reproduces correlation on basis vectors); here a wrong
matrix entry would show as an O(1) error.

Tolerance: Winograd's error grows with the tile (alpha = m + r - 1 up to 8) and with the
channel count; |got - ref| <= 1e-4 * max|ref| (float32; the im2col path meets 1e-5),
2e-3 * max|ref| for float16 storage (float32 compute, one rounding).
"""

import numpy as np
import pytest
from test_conv import conv_grads_ref, conv_ref

import metalnn as mnn

from helpers import assert_close, randn, rng

ops = mnn.ops

TOL = {np.float32: 1e-4, np.float16: 2e-3}

# (N, C, H, W, O, k, padding); output sizes 2, 4, 6 pick F(2,.), F(4,.), F(6,.), the
# others mix full and clipped edge tiles and tile rows that straddle images.
CASES = [
    (2, 9, 4, 4, 7, 3, 0),             # 2x2 output: F(2x2, 3x3)
    (2, 9, 6, 6, 7, 3, 0),             # 4x4: F(4x4, 3x3)
    (3, 10, 8, 8, 11, 3, 0),           # 6x6: F(6x6, 3x3)
    (2, 9, 6, 6, 7, 5, 0),             # 2x2: F(2x2, 5x5)
    (2, 9, 8, 8, 7, 5, 0),             # 4x4: F(4x4, 5x5)
    (3, 17, 13, 11, 19, 5, 2),         # 'same' 5x5, clipped edge tiles
    (2, 12, 15, 9, 10, 3, 1),          # 'same' 3x3
    (3, 8, 9, 14, 6, 3, (0, 2, 1, 0)),  # asymmetric padding
    (2, 32, 14, 14, 64, 5, 2),         # the digit network's conv2, smaller batch
    (1, 8, 40, 37, 6, 3, 1),           # one image in several blocks of tile rows
]
DIGIT_CONV2 = CASES[-2]


def _make(case, dtype, seed=0):
    N, C, H, W, O, k, padding = case
    r = rng(seed)
    x = randn(r, N, C, H, W, dtype=dtype)
    w = randn(r, O, C, k, k, dtype=dtype, scale=0.5)
    b = randn(r, O, dtype=dtype)
    return x, w, b, padding


def _close(got, ref, dtype, what):
    tol = TOL[dtype]
    assert_close(got, ref, atol=tol * max(1.0, np.abs(ref).max()), rtol=tol, what=what)


@pytest.fixture(autouse=True)
def default_threads():
    yield
    mnn.set_num_threads(0)


@pytest.fixture
def algo(monkeypatch):
    def set_algo(name):
        monkeypatch.setenv("METALNN_CONV_ALGO", name)
    return set_algo


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_match_reference(case, dtype, threads, algo):
    algo("winograd")
    mnn.set_num_threads(threads)
    x, w, b, padding = _make(case, dtype)
    y = ops.conv2d_forward(x, w, b, padding=padding)
    _close(y, conv_ref(x, w, b, padding=padding), dtype, "y")
    dy = randn(rng(2), *y.shape, dtype=dtype)
    rdx, rdw, _ = conv_grads_ref(dy, x, w, padding=padding)
    _close(ops.conv2d_backward_input(dy, w, x.shape, padding=padding), rdx, dtype, "dx")
    _close(ops.conv2d_backward_weight(dy, x, w.shape, padding=padding), rdw, dtype, "dw")


def test_fused_bias_relu_and_preactivation(algo):
    algo("winograd")
    x, w, b, padding = _make(CASES[5], np.float32, seed=4)
    y, z = ops.conv2d_forward(x, w, b, padding=padding, neuron="relu", return_preactivation=True)
    ref = conv_ref(x, w, b, padding=padding)
    _close(z, ref, np.float32, "z")
    _close(y, np.maximum(ref, 0.0), np.float32, "y")
    assert (y >= 0).all() and (z < 0).any()


def test_winograd_runs_and_differs_from_im2col(algo):
    # Both paths are right, but they round differently: equal outputs would mean the
    # switch did nothing.
    x, w, b, padding = _make(DIGIT_CONV2, np.float32, seed=5)
    dy = randn(rng(6), 2, 64, 14, 14)
    got = {}
    for name in ("im2col", "winograd"):
        algo(name)
        got[name] = (ops.conv2d_forward(x, w, b, padding=padding),
                     ops.conv2d_backward_input(dy, w, x.shape, padding=padding),
                     ops.conv2d_backward_weight(dy, x, w.shape, padding=padding))
    for a, c, what in zip(got["im2col"], got["winograd"], ("y", "dx", "dw")):
        assert not np.array_equal(a, c), what
        _close(c, a, np.float32, what)


def test_auto_picks_winograd_for_wide_layers_only(algo):
    # The digit network: conv2 (32 -> 64 channels) is Winograd's case, conv1 (1 input
    # channel) stays im2col.
    r = rng(7)
    x2, w2 = randn(r, 4, 32, 14, 14), randn(r, 64, 32, 5, 5, scale=0.1)
    x1, w1 = randn(r, 4, 1, 28, 28), randn(r, 32, 1, 5, 5)
    out = {}
    for name in ("auto", "winograd", "im2col"):
        algo(name)
        out[name] = (ops.conv2d_forward(x2, w2, padding=2), ops.conv2d_forward(x1, w1, padding=2))
    np.testing.assert_array_equal(out["auto"][0], out["winograd"][0])
    np.testing.assert_array_equal(out["auto"][1], out["im2col"][1])


@pytest.mark.parametrize("threads", [1, 2])
def test_auto_picks_winograd_for_batch1_conv2(algo, threads):
    # Batch 1 with 2 threads: one block of 16 tiles (one thread) beats two blocks of 8 tiles
    # padded to 32 lanes each; the block plan used to split it and lose to im2col.
    mnn.set_num_threads(threads)
    r = rng(8)
    x, w, b = randn(r, 1, 32, 14, 14), randn(r, 64, 32, 5, 5, scale=0.1), randn(r, 64)
    out = {}
    for name in ("auto", "winograd", "im2col"):
        algo(name)
        out[name] = ops.conv2d_forward(x, w, b, padding=2)
    assert not np.array_equal(out["winograd"], out["im2col"])
    np.testing.assert_array_equal(out["auto"], out["winograd"])


def test_unsupported_geometry_falls_back(algo):
    # Stride 2, dilation 2 and groups run im2col even when Winograd is forced.
    algo("winograd")
    r = rng(8)
    x, w = randn(r, 2, 8, 11, 10), randn(r, 6, 8, 3, 3)
    for kw in (dict(stride=2, padding=1), dict(dilation=2, padding=2)):
        _close(ops.conv2d_forward(x, w, **kw), conv_ref(x, w, **kw), np.float32, str(kw))
    wg = randn(r, 6, 4, 3, 3)
    _close(ops.conv2d_forward(x, wg, padding=1, groups=2), conv_ref(x, wg, padding=1, groups=2), np.float32,
           "groups")


def test_unknown_algo_raises_before_writing(algo):
    algo("fast")
    x, w, b, padding = _make(CASES[0], np.float32)
    w0 = w.copy()
    for call in (lambda: ops.conv2d_forward(x, w, b, padding=padding),
                 lambda: ops.conv2d_backward_weight(np.ones((2, 7, 2, 2), np.float32), x, w.shape, padding=padding)):
        with pytest.raises(ValueError, match=r"\[conv2d\] METALNN_CONV_ALGO must be auto, im2col or winograd"):
            call()
    np.testing.assert_array_equal(w, w0)


def test_nan_stays_local(algo):
    # A NaN input pixel reaches only the outputs whose window covers it (through the
    # transforms it could spread over whole tiles if the edges were wrong).
    algo("winograd")
    x, w, b, padding = _make(CASES[5], np.float32, seed=9)
    x[1, 3, 6, 5] = np.nan
    y = ops.conv2d_forward(x, w, b, padding=padding)
    bad = np.isnan(y)
    expect = np.zeros_like(bad)
    expect[1, :, 4:9, 3:8] = True
    # Winograd mixes a whole input tile: NaN may reach the rest of those tiles, never another image.
    assert bad[expect].all() and not bad[0].any() and not bad[2].any()
