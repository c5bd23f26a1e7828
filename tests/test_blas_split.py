"""cpu::sgemm_parallel (backend/cpu/blas.cpp): a product big enough to split is cut into one panel
per thread along its longer side (at multiples of 16 where the size allows). Reached here through
the fully-connected gradients that call it: products with the longer side M or N, odd sizes, panel
cuts inside a 16-block and not; checked against float64 numpy and one thread against two (the cut
changes no sum, so the bits must match)."""

import numpy as np
import pytest

import metalnn as mnn
from metalnn import ops

from helpers import assert_close, rng

# (what, N, O, F): backward_weight is dw (O x F) = dy^T x over N rows (trans_a); backward_input
# is dx (N x F) = dy w over O (N < 16 takes the BLAS path). Each has 2 M N K >= 4e6 (split).
CASES = [
    ("weight, M=O longer", 301, 517, 37),
    ("weight, N=F longer", 700, 37, 201),
    ("weight, both sides < 32 (cut anywhere)", 4000, 21, 30),
    ("input, N=F longer", 15, 300, 517),
]


def _run(what, N, O, F):
    r = rng(41)
    dy = r.standard_normal((N, O)).astype(np.float32)
    if what.startswith("weight"):
        x = r.standard_normal((N, F)).astype(np.float32)
        return ops.fully_connected_backward_weight(dy, x), dy.astype(np.float64).T @ x.astype(np.float64)
    w = r.standard_normal((O, F)).astype(np.float32)
    return ops.fully_connected_backward_input(dy, w, (N, F)), dy.astype(np.float64) @ w.astype(np.float64)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_split_product_matches_reference_and_one_thread(case):
    before = mnn.num_threads()
    try:
        out = []
        for n in (1, 2):
            mnn.set_num_threads(n)
            got, want = _run(*case)
            k = case[1] if case[0].startswith("weight") else case[2]
            assert_close(got, want, atol=1e-4 * np.sqrt(k), rtol=1e-4, what=f"{case[0]}, {n} threads")
            out.append(np.asarray(got))
        assert np.array_equal(out[0], out[1])
    finally:
        mnn.set_num_threads(before)
