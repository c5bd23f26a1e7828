"""Data source of PReLU's learned slopes (the ``a`` array of MPSCNNNeuronPReLU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data_source import ConvolutionWeights
from .optimizers import Optimizer


class PReLUSlopes(ConvolutionWeights):
    """One slope per feature channel for :class:`~metalnn.graph.NeuronPReLUNode`.

    ``slopes`` is a number (every channel starts there; 0.25 as in He et al.) or a ``(C,)``
    array. The slopes are held as a depthwise 1x1 weight ``(C, 1, 1, 1)`` (groups = C, no
    bias), so the graph binds, checkpoints and trains them like any layer's weights: set
    ``optimizer`` to learn them; without one they stay fixed. :attr:`slopes` is a ``(C,)``
    view of the array the graph trains in place.
    """

    def __init__(
        self,
        channels: int,
        slopes: float | np.ndarray = 0.25,
        *,
        optimizer: Optimizer | None = None,
        label: str | None = None,
        dtype: Any = "float32",
    ) -> None:
        owner = "PReLUSlopes"
        if isinstance(channels, (bool, np.bool_)) or not isinstance(channels, (int, np.integer)):
            raise TypeError(f"[{owner}] channels must be an int, got {channels!r}")
        if channels < 1:
            raise ValueError(f"[{owner}] channels must be positive, got {channels}")
        if isinstance(slopes, np.ndarray):
            if slopes.shape != (channels,):
                raise ValueError(f"[{owner}] slopes has shape {slopes.shape}, expected ({channels},)")
            init = slopes
        elif isinstance(slopes, (int, float, np.floating, np.integer)) and not isinstance(slopes, bool):
            init = np.full(channels, float(slopes))
        else:
            raise TypeError(f"[{owner}] slopes must be a number or a ({channels},) array, got {type(slopes).__name__}")
        if not np.all(np.isfinite(np.asarray(init, dtype=np.float64))):
            raise ValueError(f"[{owner}] slopes must be finite")
        super().__init__(
            channels, channels, 1, groups=channels, weights_init=np.asarray(init).reshape(channels, 1, 1, 1),
            bias=False, optimizer=optimizer, label=label or f"prelu_{channels}", dtype=dtype,
        )

    @property
    def channels(self) -> int:
        return self.descriptor().out_channels

    @property
    def slopes(self) -> np.ndarray:
        """The current slopes, ``(C,)`` (a view: it follows training)."""
        self.load()
        assert self.weight_array is not None
        return self.weight_array.reshape(-1)

    def __repr__(self) -> str:
        return (f"PReLUSlopes(channels={self.channels}, dtype={self.dtype.name}, label={self.label()!r}, "
                f"optimizer={self.optimizer!r})")
