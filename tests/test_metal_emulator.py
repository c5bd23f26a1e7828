"""The MSL emulator itself (tests/metal): atomics, simd shuffles, vector swizzles, half math,
host-sized threadgroup memory, and its parameter checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from emulator import EmulatorError, compile_metal, find_clang, poisoned  # noqa: E402

if find_clang() is None:
    pytest.skip("no clang++ >= 15 (needed for _Float16 and vector swizzles): the Metal emulator tests are skipped",
                allow_module_level=True)

FEATURES = Path(__file__).resolve().parent / "metal" / "features.metal"


def lib():
    return compile_metal(FEATURES)


def test_atomics_int_device_and_threadgroup():
    x = np.arange(1, 301, dtype=np.int32)
    total = np.zeros(1, np.int32)
    lib().dispatch("atomic_total", [x, total, np.uint32(300)], 300, 64)
    assert total[0] == x.sum()


def test_atomic_float_add():
    x = np.linspace(0, 1, 100, dtype=np.float32)
    bins = np.zeros(3, np.float32)
    lib().dispatch("atomic_float_bins", [x, bins, np.uint32(100)], 100, 32)
    np.testing.assert_allclose(bins, [x[k::3].sum() for k in range(3)], rtol=1e-6)


def test_simd_shuffle_down_sum():
    x = np.arange(128, dtype=np.float32)
    y = poisoned(4, np.float32)
    lib().dispatch("shuffle_sum", [x, y], 128, 64)
    np.testing.assert_array_equal(y, x.reshape(4, 32).sum(1))


def test_vector_constructors_swizzles_half():
    x = np.arange(20, dtype=np.float32).reshape(5, 4) + 0.5
    y = poisoned((5, 4), np.float32)
    lib().dispatch("swizzle", [x, y], 5, 5)
    np.testing.assert_array_equal(y, (x[:, ::-1].astype(np.float16) * np.float16(2)).astype(np.float32))


def test_threadgroup_argument_memory():
    x = np.arange(96, dtype=np.float32)
    y = poisoned(96, np.float32)
    lib().dispatch("reverse_tg", [x, y], 96, 48, threadgroup_memory=[48 * 4])
    np.testing.assert_array_equal(y, x.reshape(2, 48)[:, ::-1].reshape(-1))
    with pytest.raises(EmulatorError, match="exceeds 32768"):
        lib().dispatch("reverse_tg", [x, poisoned(96, np.float32)], 96, 48, threadgroup_memory=[40000])


def test_unknown_kernel():
    with pytest.raises(EmulatorError, match="no kernel"):
        lib().dispatch("nope", [], 1, 1)
