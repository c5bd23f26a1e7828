"""Argument checks shared by the graph's optimizers and data sources.

Each raises TypeError (wrong type) or ValueError (bad value) with a message that starts with
``[owner]`` and names the argument.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """A real number (Python or numpy); bools are not numbers here (``True`` is no rate)."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)


def integer(owner: str, name: str, value: Any) -> int:
    """An int or anything with ``__index__`` (numpy integers); bools and floats are refused."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"[{owner}] {name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"[{owner}] {name} must be an int, got {type(value).__name__} {value!r}"
        ) from None
