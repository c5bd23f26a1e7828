"""Every .metal kernel on the CPU emulator (tests/metal) against the CPU backend (mnn.ops.*),
on odd sizes that are not multiples of the threadgroup, float32 and float16; and broken
kernels (tests/metal/broken.metal) that the emulator must catch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import metalnn as mnn

from helpers import DTYPES, assert_close, randn, rng

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "metal"))
from emulator import EmulatorError, compile_metal, find_clang, poisoned  # noqa: E402
from params import DropoutParams, NeuronParams, SoftmaxParams  # noqa: E402

if find_clang() is None:
    pytest.skip("no clang++ >= 15 (needed for _Float16 and vector swizzles): the Metal emulator tests are skipped",
                allow_module_level=True)

KERNELS = Path(__file__).resolve().parent.parent / "cpp" / "kernels"
SUFFIX = {np.float32: "float32", np.float16: "float16"}


def lib(name: str):
    return compile_metal(KERNELS / f"{name}.metal")


def run_both_schedules(library, kernel, buffers, outputs, grid, threadgroup):
    """Dispatches twice (threads in order, then reversed between barriers) into poisoned outputs;
    the results must agree, or the kernel has a race. Returns the outputs of the first run."""
    results = []
    for schedule in (0, 1):
        outs = [poisoned(o.shape, o.dtype) for o in outputs]
        bufs = [outs[b[1]] if isinstance(b, tuple) and b[0] == "out" else b for b in buffers]
        library.dispatch(kernel, bufs, grid, threadgroup, schedule=schedule)
        results.append(outs)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=f"{kernel}: schedule-dependent")
    return results[0]


# ---------------------------------------------------------------- neuron

NEURON_TYPES = ("none", "relu", "leaky_relu", "sigmoid", "hard_sigmoid", "tanh", "linear", "absolute", "softplus",
                "elu", "relun", "gelu")
COEFFS = {"relu": (0.0, 0.0), "leaky_relu": (0.3, 0.0), "hard_sigmoid": (0.4, 0.3), "tanh": (1.7, 0.6),
          "linear": (-2.5, 0.75), "softplus": (0.5, 2.0), "elu": (0.8, 0.0), "relun": (0.1, 1.5)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NEURON_TYPES)
def test_neuron(name, dtype):
    r = rng(1)
    x = randn(r, 3, 7, 11, dtype=dtype, scale=3.0)  # 231 elements: not a multiple of 64
    x.reshape(-1)[:4] = [0.0, np.nan, 25.0, -25.0]
    dy = randn(r, *x.shape, dtype=dtype)
    a, b = COEFFS.get(name, (1.0, 1.0))
    p = NeuronParams(NEURON_TYPES.index(name), a, b, 0.0)
    n = np.uint32(x.size)
    k = lib("neuron")
    y, = run_both_schedules(k, f"neuron_forward_{SUFFIX[dtype]}", [x, ("out", 0), p, n], [x], x.size, 64)
    dx, = run_both_schedules(k, f"neuron_backward_{SUFFIX[dtype]}", [dy, x, ("out", 0), p, n], [x], x.size, 64)
    assert_close(y, mnn.ops.neuron_forward(x, name, a, b), dtype, what=f"{name} forward")
    assert_close(dx, mnn.ops.neuron_backward(dy, x, name, a, b), dtype, what=f"{name} backward")
