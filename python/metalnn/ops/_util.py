"""Helpers shared by the kernel wrappers."""

from __future__ import annotations

from typing import Union

import numpy as np

from .._core import Tensor

#: What every kernel accepts: a numpy array (result is numpy) or a device tensor.
ArrayLike = Union[np.ndarray, Tensor]


def pair(value, name: str, op: str) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays. Raises ValueError naming ``op`` and ``name``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"[{op}] {name} must be an int or a pair of ints, got {value!r}") from None
