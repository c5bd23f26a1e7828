"""What every Metal kernel test shares: where the kernels are, compiling one file, and a
dispatch that runs twice (threads in order, then reversed between barriers) and fails
on any difference, which is a race."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from emulator import compile_metal, find_clang, poisoned

KERNELS = Path(__file__).resolve().parent.parent.parent / "cpp" / "kernels"
SUFFIX = {np.float32: "float32", np.float16: "float16"}


def skip_without_clang() -> None:
    if find_clang() is None:
        pytest.skip("no clang++ >= 15 (needed for _Float16 and vector swizzles): the Metal emulator tests are "
                    "skipped", allow_module_level=True)


def lib(name: str):
    """The compiled library of cpp/kernels/<name>.metal (cached by content)."""
    return compile_metal(KERNELS / f"{name}.metal")


def run_both_schedules(library, kernel, buffers, outputs, grid, threadgroup):
    """Dispatches into poisoned outputs (``("out", i)`` in ``buffers``) with threads in order,
    then reversed between barriers; the two must agree bit for bit. Returns the first run's outputs."""
    results = []
    for schedule in (0, 1):
        outs = [poisoned(o.shape, o.dtype) for o in outputs]
        bufs = [outs[b[1]] if isinstance(b, tuple) and b[0] == "out" else b for b in buffers]
        library.dispatch(kernel, bufs, grid, threadgroup, schedule=schedule)
        results.append(outs)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=f"{kernel}: schedule-dependent")
    return results[0]
