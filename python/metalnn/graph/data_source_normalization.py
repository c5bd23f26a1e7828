"""Data sources of the normalization nodes, as ``MPSCNNInstanceNormalizationDataSource`` and
``MPSCNNBatchNormalizationDataSource``.

A :class:`NormalizationDataSource` provides the per-channel affine parameters ``gamma`` and
``beta`` (float32 ``(C,)``; None means ones / zeros) and ``epsilon``; a
:class:`BatchNormalizationDataSource` adds the running ``mean`` and ``variance`` (None means
zeros / ones). When a graph compiles it calls, in this order::

    label()  number_of_feature_channels()  load()  gamma()  beta()  [mean()  variance()]  epsilon()  purge()

Training. gamma / beta train like a convolution's weights / biases: through the source's
``optimizer`` (applied by the graph in C++), or through its own ``update(gradient_state,
source_state)`` if the class defines one (``gradient_state.weight_gradients`` is dgamma,
``.bias_gradients`` dbeta; ``source_state.weights`` is gamma, ``.biases`` beta; cpu graphs
only); with neither they are frozen. The running statistics of a batch normalization move by
the node's ``momentum`` after every training batch, whatever the optimizer.

Storage. On a cpu graph the arrays the source returns are bound without a copy when they are
writable, C-contiguous float32 ``(C,)`` arrays, so training updates them in place and a later
graph built from the same source (an inference graph, say) sees the trained values. Other
arrays (float16, read-only, strided) are copied: the graph then trains its copy. The built-in
:class:`NormalizationWeights` and :class:`BatchNormalizationWeights` always hold such arrays.
"""

from __future__ import annotations

import abc
import math
from typing import Any, NamedTuple

import numpy as np

from ._validate import integer, is_real
from .optimizers import Optimizer

__all__ = [
    "NormalizationDataSource",
    "BatchNormalizationDataSource",
    "NormalizationWeights",
    "BatchNormalizationWeights",
    "NormalizationParameters",
    "read_normalization_parameters",
]


class NormalizationDataSource(abc.ABC):
    """Provider of a normalization layer's gamma / beta (instance, group, layer norm).

    Implement :meth:`number_of_feature_channels`, :meth:`gamma`, :meth:`beta` and
    :meth:`label`; :meth:`epsilon`, :meth:`load` and :meth:`purge` have defaults. Define
    ``update(gradient_state, source_state)`` in a subclass to train gamma / beta yourself, or
    set :attr:`optimizer`.
    """

    #: Optimizer the graph applies to gamma / beta (None and no ``update``: frozen).
    optimizer: Optimizer | None = None

    @abc.abstractmethod
    def number_of_feature_channels(self) -> int:
        """C, the channels the layer normalises."""

    @abc.abstractmethod
    def gamma(self) -> np.ndarray | None:
        """Scale per channel ``(C,)``, or None for ones."""

    @abc.abstractmethod
    def beta(self) -> np.ndarray | None:
        """Shift per channel ``(C,)``, or None for zeros."""

    @abc.abstractmethod
    def label(self) -> str:
        """A name for error messages and parameter names."""

    def epsilon(self) -> float:
        """Added to the variance before the square root (> 0)."""
        return 1e-5

    def load(self) -> bool:
        """Make the arrays available; False makes the graph raise RuntimeError."""
        return True

    def purge(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """The graph has bound or copied what it needs."""


class BatchNormalizationDataSource(NormalizationDataSource):
    """Provider of a batch normalization layer: gamma / beta plus the running statistics
    (``MPSCNNBatchNormalizationDataSource``)."""

    @abc.abstractmethod
    def mean(self) -> np.ndarray | None:
        """Running mean ``(C,)``, or None for zeros."""

    @abc.abstractmethod
    def variance(self) -> np.ndarray | None:
        """Running variance ``(C,)``, or None for ones."""


# ---------------------------------------------------------------------------------------
# built-in sources


def _vector(owner: str, name: str, value: Any, channels: int, default: float) -> np.ndarray:
    """A float32 (C,) copy of ``value`` (None: filled with ``default``)."""
    if value is None:
        return np.full(channels, default, np.float32)
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise TypeError(f"[{owner}] {name} must be a float numpy array or None, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.shape != (channels,):
        raise ValueError(f"[{owner}] {name} has shape {value.shape}, expected ({channels},)")
    return np.array(value, dtype=np.float32, copy=True)


def _epsilon(owner: str, value: Any) -> float:
    if not is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"[{owner}] epsilon must be a finite number > 0, got {value!r}")
    return float(value)


class NormalizationWeights(NormalizationDataSource):
    """Built-in source holding ``gamma_array`` / ``beta_array`` (float32 ``(C,)``, ones and
    zeros unless given). The graph trains these arrays in place (cpu graphs)."""

    _owner = "NormalizationWeights"

    def __init__(self, channels: int, gamma: np.ndarray | None = None, beta: np.ndarray | None = None, *,
                 epsilon: float = 1e-5, optimizer: Optimizer | None = None, label: str | None = None) -> None:
        owner = self._owner
        c = integer(owner, "channels", channels)
        if c < 1:
            raise ValueError(f"[{owner}] channels must be >= 1, got {c}")
        self.channels = c
        self.gamma_array = _vector(owner, "gamma", gamma, c, 1.0)
        self.beta_array = _vector(owner, "beta", beta, c, 0.0)
        self._epsilon = _epsilon(owner, epsilon)
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"[{owner}] optimizer must be None or an SGD/Adam/RMSProp object, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if label is not None and (not isinstance(label, str) or not label):
            raise TypeError(f"[{owner}] label must be a non-empty str or None, got {label!r}")
        self._label = label or f"norm{c}"

    def number_of_feature_channels(self) -> int:
        return self.channels

    def gamma(self) -> np.ndarray:
        return self.gamma_array

    def beta(self) -> np.ndarray:
        return self.beta_array

    def epsilon(self) -> float:
        return self._epsilon

    def label(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels}, label={self._label!r}, optimizer={self.optimizer!r})"


class BatchNormalizationWeights(NormalizationWeights, BatchNormalizationDataSource):
    """Built-in batch normalization source: gamma / beta plus ``mean_array`` /
    ``variance_array`` (float32 ``(C,)``, zeros and ones unless given), all trained in place
    by a cpu training graph (gamma / beta by the optimizer, the statistics by momentum)."""

    _owner = "BatchNormalizationWeights"

    def __init__(self, channels: int, gamma: np.ndarray | None = None, beta: np.ndarray | None = None,
                 mean: np.ndarray | None = None, variance: np.ndarray | None = None, *, epsilon: float = 1e-5,
                 optimizer: Optimizer | None = None, label: str | None = None) -> None:
        super().__init__(channels, gamma, beta, epsilon=epsilon, optimizer=optimizer,
                         label=label or f"batchnorm{channels}")
        self.mean_array = _vector(self._owner, "mean", mean, self.channels, 0.0)
        self.variance_array = _vector(self._owner, "variance", variance, self.channels, 1.0)
        if (self.variance_array < 0).any():
            raise ValueError(f"[{self._owner}] variance must be >= 0")

    def mean(self) -> np.ndarray:
        return self.mean_array

    def variance(self) -> np.ndarray:
        return self.variance_array


# ---------------------------------------------------------------------------------------
# reading a source


class NormalizationParameters(NamedTuple):
    """What :func:`read_normalization_parameters` returns (float32 (C,) arrays)."""

    label: str
    channels: int
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray | None
    variance: np.ndarray | None
    epsilon: float


def _bindable(value: Any, where: str, name: str, channels: int, default: float) -> np.ndarray:
    """The source's array itself when the graph can train it in place, else a float32 copy."""
    if value is None:
        return np.full(channels, default, np.float32)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where} {name}() must return a numpy array or None, got {type(value).__name__}")
    if value.dtype.kind != "f":
        raise TypeError(f"{where} {name}() must hold floating point numbers, got dtype {value.dtype}")
    if value.shape != (channels,):
        raise ValueError(f"{where} {name}() has shape {value.shape}, expected ({channels},)")
    if value.dtype == np.float32 and value.flags.c_contiguous and value.flags.writeable:
        return value
    return np.array(value, dtype=np.float32, order="C", copy=True)


_PROTOCOL = ("number_of_feature_channels", "gamma", "beta", "label", "epsilon", "load", "purge")


def read_normalization_parameters(source: Any, *, batch: bool) -> NormalizationParameters:
    """Runs the compile-time protocol on ``source`` (see the module docstring for the order)
    and validates what it returns; ``batch`` also reads mean() and variance().

    Raises TypeError for a non-source or wrong types, ValueError for wrong shapes or epsilon,
    RuntimeError when load() returns False; messages start with ``[DataSource]`` and the label.
    """
    needed = _PROTOCOL + (("mean", "variance") if batch else ())
    missing = [m for m in needed if not callable(getattr(source, m, None))]
    if missing:
        kind = "batch normalization" if batch else "normalization"
        raise TypeError(f"[DataSource] {type(source).__name__} is not a {kind} data source: "
                        f"missing {', '.join(missing)}")
    label = source.label()
    if not isinstance(label, str):
        raise TypeError(f"[DataSource] label() must return a str, got {type(label).__name__}")
    where = f"[DataSource] {label!r}:"
    c = source.number_of_feature_channels()
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise ValueError(f"{where} number_of_feature_channels() must return an int >= 1, got {c!r}")
    c = int(c)
    ok = source.load()
    if not isinstance(ok, (bool, np.bool_)):
        raise TypeError(f"{where} load() must return a bool, got {type(ok).__name__}")
    if not ok:
        raise RuntimeError(f"{where} load() returned False: the data source could not load its parameters")
    gamma = _bindable(source.gamma(), where, "gamma", c, 1.0)
    beta = _bindable(source.beta(), where, "beta", c, 0.0)
    mean = variance = None
    if batch:
        mean = _bindable(source.mean(), where, "mean", c, 0.0)
        variance = _bindable(source.variance(), where, "variance", c, 1.0)
    eps = source.epsilon()
    if not is_real(eps) or not math.isfinite(float(eps)) or float(eps) <= 0:
        raise ValueError(f"{where} epsilon() must return a finite number > 0, got {eps!r}")
    source.purge()
    return NormalizationParameters(label, c, gamma, beta, mean, variance, float(eps))
