"""Finds the BLAS the CPU backend loads at run time (no system package needed)."""

from __future__ import annotations

import glob
import os
import sys


def find_blas_library() -> str | None:
    """Path of the OpenBLAS shared library from the ``scipy-openblas32`` wheel, if installed.

    ``METALNN_BLAS`` overrides the search (a path to any CBLAS library).
    """
    override = os.environ.get("METALNN_BLAS")
    if override:
        return override
    if sys.platform == "darwin":
        return None  # Accelerate is linked at build time
    try:
        import scipy_openblas32
    except ImportError:
        return None
    libdir = scipy_openblas32.get_lib_dir()
    for pattern in ("libscipy_openblas*.so*", "libscipy_openblas*.dylib", "*openblas*.dll"):
        hits = sorted(glob.glob(os.path.join(libdir, pattern)))
        if hits:
            return hits[0]
    return None
