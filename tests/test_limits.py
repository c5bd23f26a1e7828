"""Limits (issue 9, item 7): tensors past 2^31 elements index correctly (64-bit indexing),
sizes a kernel cannot index raise a clear error, and an allocation the machine cannot hold
raises MemoryError instead of crashing."""

import numpy as np
import pytest

import metalnn as mnn

BIG = (1 << 31) + 7  # elements: just past what a 32-bit index reaches


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


needs_memory = pytest.mark.skipif(_available_bytes() < 14 << 30,
                                  reason="needs about 12 GiB of free memory (two 4 GiB float16 tensors)")


@pytest.fixture(scope="module")
def big_half():
    x = np.full(BIG, -1.0, np.float16)
    x[-5:] = 3.0  # the tail lies past element 2^31
    x[(1 << 31) - 2] = 2.0
    return x


@needs_memory
def test_elementwise_past_2_31(big_half):
    y = mnn.ops.neuron_forward(big_half, "relu")
    assert y.shape == big_half.shape
    assert np.all(y[-5:] == 3.0) and y[(1 << 31) - 2] == 2.0 and y[-6] == 0.0 and y[0] == 0.0
    del y
    y, _ = mnn.ops.dropout_forward(big_half, 0.5, seed=3)
    assert set(np.unique(y[-5:]).tolist()) <= {0.0, 6.0}  # kept values scaled by 1/keep, others dropped
    tail = set(np.unique(y[-1000:]).tolist())  # -1 -> -2 or 0, 3 -> 6 or 0, the 2.0 at 2^31 - 2 -> 4 or 0
    assert {-2.0, 6.0} <= tail <= {0.0, -2.0, 4.0, 6.0}


@needs_memory
def test_rows_past_2_31(big_half):
    """Softmax over rows whose total passes 2^31 elements: the last rows are right."""
    cols = 1 << 12
    rows = BIG // cols + 1
    x = np.zeros((rows, cols), np.float16)
    x[-1, -1] = 4.0
    y = mnn.ops.softmax_forward(x)
    e = np.exp(4.0)
    np.testing.assert_allclose(float(y[-1, -1]), e / (e + cols - 1), rtol=2e-3)
    np.testing.assert_allclose(float(y[-1, 0]), 1 / (e + cols - 1), rtol=2e-3)
    np.testing.assert_allclose(float(y[0, 0]), 1 / cols, rtol=2e-3)


def test_impossible_allocation_raises_memory_error():
    x = np.zeros((1, 1, 1, 1), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    pad = 1 << 21  # output (2^22)^2 floats: 64 TiB
    with pytest.raises(MemoryError, match="out of memory"):
        mnn.ops.conv2d_forward(x, w, padding=[pad, pad, pad, pad])


def test_sizes_beyond_the_kernels_index_range_are_refused():
    x = np.zeros((1, 1, 1, 1), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"^\[conv2d_forward\] .*2\^30"):
        mnn.ops.conv2d_forward(x, w, padding=1 << 30)


def test_a_failed_allocation_leaves_the_library_working():
    x = np.zeros((1, 1, 1, 1), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    for _ in range(3):
        with pytest.raises(MemoryError):
            mnn.ops.conv2d_forward(x, w, padding=[1 << 21] * 4)
    y = mnn.ops.neuron_forward(np.arange(-3, 4, dtype=np.float32), "relu")
    assert y.tolist() == [0, 0, 0, 0, 1, 2, 3]
