"""Data sources: where a convolution / fully connected layer gets its parameters, as
``MPSCNNConvolutionDataSource`` and ``MPSCNNConvolutionDescriptor``.

A graph never owns weights outright: each trainable filter node names a :class:`DataSource`.
When the graph compiles it calls, in this order::

    descriptor()  load()  weights()  biases()  purge()

so weights can be loaded just in time and dropped once the graph has copied or bound them
(:func:`read_parameters` performs exactly this sequence with validation). During training the
graph calls ``update(gradient_state, source_state)`` once per batch, after the gradient pass,
in reverse layer order -- unless the source does *not* override :meth:`DataSource.update` and
has an ``optimizer``: then the graph applies that optimizer itself in C++ (fast path). A source
with neither is frozen (its parameters are not trained).

Layouts: weights are ``(O, in_channels / groups, kH, kW)`` (OIHW, float32 or float16); a fully
connected layer is a convolution whose kernel covers the whole input, so ``(O, F)`` with
``F = in_channels / groups * kH * kW`` is accepted too. Biases are ``(O,)`` or None.

:class:`ConvolutionWeights` is the built-in source holding numpy arrays, initialised with

* He (Kaiming) normal:   ``w ~ N(0, sqrt(2 / fan_in))``
* Glorot (Xavier) uniform: ``w ~ U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))``
* zeros

where ``fan_in = in_channels / groups * kH * kW`` and ``fan_out = out_channels / groups * kH * kW``
(the inputs feeding one output, and the outputs one input feeds); biases start at zero.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Union, overload

import numpy as np

from ..ops.neuron import NEURON_TYPES
from . import checkpoint as _checkpoint
from ._validate import integer, is_real
from .optimizers import Optimizer

__all__ = [
    "ConvolutionDescriptor",
    "DataSource",
    "WeightsState",
    "GradientState",
    "ConvolutionWeights",
    "Parameters",
    "read_parameters",
    "he_normal",
    "glorot_uniform",
    "initial_weights",
    "WEIGHT_INITS",
]

WEIGHT_INITS = ("he", "glorot", "zeros")
_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
DTypeLike = Union[str, type, np.dtype]


# ---------------------------------------------------------------------------------------
# validation helpers


def _positive_int(owner: str, name: str, value: Any) -> int:
    v = integer(owner, name, value)
    if v < 1:
        raise ValueError(f"[{owner}] {name} must be >= 1, got {v}")
    return v


def _int_pair(owner: str, name: str, value: Any) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; a pair ``(h, w)`` of positive ints stays."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        v = _positive_int(owner, name, value)
        return v, v
    if len(value) != 2:
        raise ValueError(f"[{owner}] {name} must be an int or a pair (h, w), got {tuple(value)!r}")
    return _positive_int(owner, f"{name}[0]", value[0]), _positive_int(
        owner, f"{name}[1]", value[1]
    )


def _param_dtype(owner: str, dtype: Any) -> np.dtype:
    try:
        d = None if dtype is None else np.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d not in _PARAM_DTYPES:
        raise TypeError(f"[{owner}] dtype must be 'float32' or 'float16', got {dtype!r}")
    return d


def _float_array(owner: str, name: str, value: Any) -> np.ndarray:
    """A numpy array of real floating point numbers (any float width; converted later)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"[{owner}] {name} must be a numpy array, got {type(value).__name__}")
    if value.dtype.kind != "f":
        raise TypeError(
            f"[{owner}] {name} must hold floating point numbers, got dtype {value.dtype}"
        )
    return value


# ---------------------------------------------------------------------------------------
# descriptor


class _PairAxis(property):
    """Read-only property: one axis of an ``(h, w)`` pair field (``kernel_w`` is ``_kernel[1]``)."""

    def __init__(self, pair: str, axis: int) -> None:
        super().__init__(lambda obj: getattr(obj, pair)[axis])

    # Typed for mypy (a property built by a call reads as Any): the class gets the property,
    # an instance the int.
    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _PairAxis: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> int: ...

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return super().__get__(obj, owner)


class ConvolutionDescriptor:
    """Shape of a convolution or fully connected layer (``MPSCNNConvolutionDescriptor``).

    ``kernel_size``, ``stride`` and ``dilation`` are an int or an ``(h, w)`` pair;
    ``in_channels`` and ``out_channels`` must be divisible by ``groups``. ``neuron`` is an
    optional activation applied after the bias and fused into the layer (a name from
    :data:`metalnn.ops.NEURON_TYPES`, e.g. ``"relu"``, with optional parameters
    ``neuron_a`` / ``neuron_b``, as ``MPSCNNNeuron``'s a and b).

    For a fully connected layer the kernel covers the whole input: ``kernel_size`` = (H, W) of
    the input and ``in_channels`` = C, so weights (O, C, H, W) == (O, F) with F = C*H*W;
    ``kernel_size=1, in_channels=F`` is the 2-D (matrix) input case.

    Descriptors are immutable, comparable and hashable.
    """

    __slots__ = ("_in", "_out", "_kernel", "_stride", "_dilation", "_groups", "_neuron", "_a", "_b")

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        in_channels: int,
        out_channels: int,
        stride: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        neuron: str | None = None,
        neuron_a: float | None = None,
        neuron_b: float | None = None,
    ) -> None:
        self._init(
            "ConvolutionDescriptor",
            kernel_size,
            in_channels,
            out_channels,
            stride,
            dilation,
            groups,
            neuron,
            neuron_a,
            neuron_b,
        )

    def _init(
        self,
        owner: str,
        kernel_size: Any,
        in_channels: Any,
        out_channels: Any,
        stride: Any = 1,
        dilation: Any = 1,
        groups: Any = 1,
        neuron: Any = None,
        neuron_a: Any = None,
        neuron_b: Any = None,
    ) -> None:
        """``__init__`` with error messages prefixed by ``owner``."""
        self._kernel = _int_pair(owner, "kernel_size", kernel_size)
        self._in = _positive_int(owner, "in_channels", in_channels)
        self._out = _positive_int(owner, "out_channels", out_channels)
        self._stride = _int_pair(owner, "stride", stride)
        self._dilation = _int_pair(owner, "dilation", dilation)
        self._groups = _positive_int(owner, "groups", groups)
        if self._in % self._groups:
            raise ValueError(
                f"[{owner}] in_channels ({self._in}) must be divisible by groups ({self._groups})"
            )
        if self._out % self._groups:
            raise ValueError(
                f"[{owner}] out_channels ({self._out}) must be divisible by groups ({self._groups})"
            )
        if neuron is not None:
            if not isinstance(neuron, str):
                raise TypeError(
                    f"[{owner}] neuron must be None or a neuron type name, got {neuron!r}"
                )
            if neuron not in NEURON_TYPES:
                raise ValueError(
                    f"[{owner}] neuron: unknown type {neuron!r} "
                    f"(expected one of {', '.join(NEURON_TYPES)})"
                )
        self._neuron = neuron
        params = []
        for pname, p in (("neuron_a", neuron_a), ("neuron_b", neuron_b)):
            if p is not None:
                if neuron is None:
                    raise ValueError(f"[{owner}] {pname} given without a neuron")
                if not is_real(p):
                    raise TypeError(f"[{owner}] {pname} must be a real number, got {p!r}")
                if not math.isfinite(float(p)):
                    raise ValueError(f"[{owner}] {pname} must be finite, got {p!r}")
                p = float(p)
            params.append(p)
        self._a, self._b = params

    @classmethod
    def _create(cls, owner: str, **kw: Any) -> ConvolutionDescriptor:
        """Build with error messages prefixed by ``owner`` (e.g. ConvolutionWeights)."""
        d = cls.__new__(cls)
        d._init(owner, **kw)
        return d

    # -- fields ------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self._in

    @property
    def out_channels(self) -> int:
        return self._out

    @property
    def groups(self) -> int:
        return self._groups

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self._kernel

    @property
    def stride(self) -> tuple[int, int]:
        return self._stride

    @property
    def dilation(self) -> tuple[int, int]:
        return self._dilation

    @property
    def neuron(self) -> str | None:
        return self._neuron

    @property
    def neuron_a(self) -> float | None:
        return self._a

    @property
    def neuron_b(self) -> float | None:
        return self._b

    kernel_h = _PairAxis("_kernel", 0)
    kernel_w = _PairAxis("_kernel", 1)
    stride_h = _PairAxis("_stride", 0)
    stride_w = _PairAxis("_stride", 1)
    dilation_h = _PairAxis("_dilation", 0)
    dilation_w = _PairAxis("_dilation", 1)

    # -- derived -----------------------------------------------------------------------
    @property
    def features(self) -> int:
        """F = in_channels / groups * kH * kW: weights per output channel (row length of (O, F))."""
        return self._in // self._groups * self._kernel[0] * self._kernel[1]

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """(O, in_channels / groups, kH, kW)."""
        return (self._out, self._in // self._groups, self._kernel[0], self._kernel[1])

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output: in_channels / groups * kH * kW."""
        return self.features

    @property
    def fan_out(self) -> int:
        """Outputs one input feeds: out_channels / groups * kH * kW."""
        return self._out // self._groups * self._kernel[0] * self._kernel[1]

    # -- value semantics ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (pairs as lists); inverse of :meth:`from_dict`."""
        return {
            "kernel_size": list(self._kernel),
            "in_channels": self._in,
            "out_channels": self._out,
            "stride": list(self._stride),
            "dilation": list(self._dilation),
            "groups": self._groups,
            "neuron": self._neuron,
            "neuron_a": self._a,
            "neuron_b": self._b,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvolutionDescriptor:
        if not isinstance(d, Mapping):
            raise TypeError(
                f"[ConvolutionDescriptor] expected a dict from to_dict(), got {type(d).__name__}"
            )
        unknown = set(d) - set(cls(1, 1, 1).to_dict())
        if unknown:
            raise ValueError(f"[ConvolutionDescriptor] unknown fields {sorted(unknown)}")
        missing = {"kernel_size", "in_channels", "out_channels"} - set(d)
        if missing:
            raise ValueError(f"[ConvolutionDescriptor] missing fields {sorted(missing)}")
        return cls(**d)

    def _key(self) -> tuple:
        return (
            self._kernel,
            self._in,
            self._out,
            self._stride,
            self._dilation,
            self._groups,
            self._neuron,
            self._a,
            self._b,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConvolutionDescriptor):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [
            f"kernel_size={self._kernel}",
            f"in_channels={self._in}",
            f"out_channels={self._out}",
        ]
        if self._stride != (1, 1):
            parts.append(f"stride={self._stride}")
        if self._dilation != (1, 1):
            parts.append(f"dilation={self._dilation}")
        if self._groups != 1:
            parts.append(f"groups={self._groups}")
        if self._neuron is not None:
            parts.append(f"neuron={self._neuron!r}")
        if self._a is not None:
            parts.append(f"neuron_a={self._a}")
        if self._b is not None:
            parts.append(f"neuron_b={self._b}")
        return f"ConvolutionDescriptor({', '.join(parts)})"


# ---------------------------------------------------------------------------------------
# protocol


def _check_layer_arrays(owner: str, weights: tuple[str, Any], biases: tuple[str, Any]) -> None:
    """A layer's (name, value) pairs: the weights' a numpy array, the biases' one or None."""
    if not isinstance(weights[1], np.ndarray):
        raise TypeError(
            f"[{owner}] {weights[0]} must be a numpy array, got {type(weights[1]).__name__}"
        )
    if biases[1] is not None and not isinstance(biases[1], np.ndarray):
        raise TypeError(
            f"[{owner}] {biases[0]} must be a numpy array or None, got {type(biases[1]).__name__}"
        )


class WeightsState:
    """A layer's parameters handed between the graph and :meth:`DataSource.update`
    (as ``MPSCNNConvolutionWeightsAndBiasesState``): ``weights`` and ``biases`` (or None)."""

    __slots__ = ("weights", "biases")

    def __init__(self, weights: np.ndarray, biases: np.ndarray | None = None) -> None:
        _check_layer_arrays("WeightsState", ("weights", weights), ("biases", biases))
        self.weights = weights
        self.biases = biases

    def __repr__(self) -> str:
        b = None if self.biases is None else self.biases.shape
        return f"WeightsState(weights={self.weights.shape} {self.weights.dtype}, biases={b})"


class GradientState:
    """Gradients of one layer for :meth:`DataSource.update` (as
    ``MPSCNNConvolutionGradientState``): ``weight_gradients`` (the weights' shape) and
    ``bias_gradients`` (``(O,)`` or None)."""

    __slots__ = ("weight_gradients", "bias_gradients")

    def __init__(
        self, weight_gradients: np.ndarray, bias_gradients: np.ndarray | None = None
    ) -> None:
        _check_layer_arrays(
            "GradientState", ("weight_gradients", weight_gradients), ("bias_gradients", bias_gradients)
        )
        self.weight_gradients = weight_gradients
        self.bias_gradients = bias_gradients

    def __repr__(self) -> str:
        b = None if self.bias_gradients is None else self.bias_gradients.shape
        return f"GradientState(weight_gradients={self.weight_gradients.shape}, bias_gradients={b})"


class DataSource(abc.ABC):
    """Provider of one layer's parameters (the ``MPSCNNConvolutionDataSource`` protocol).

    Subclasses must implement :meth:`descriptor`, :meth:`weights`, :meth:`biases`,
    :meth:`load`, :meth:`purge` and :meth:`label` (instantiating a subclass that misses one
    raises TypeError). :meth:`update` is optional; set :attr:`optimizer` instead to let the
    graph train the parameters in C++.

    Call order at graph compile: ``descriptor(), load(), weights(), biases(), purge()``; then
    ``update(...)`` once per training batch, after the gradient pass, in reverse layer order.
    """

    #: Optimizer the graph applies (in C++) when :meth:`update` is not overridden; None with
    #: no update override means the layer is frozen.
    optimizer: Optimizer | None = None

    @abc.abstractmethod
    def descriptor(self) -> ConvolutionDescriptor:
        """The layer's shape (``-descriptor``)."""

    @abc.abstractmethod
    def weights(self) -> np.ndarray:
        """``(O, in_channels / groups, kH, kW)`` float32 or float16 (``(O, F)`` accepted);
        valid between :meth:`load` and :meth:`purge`."""

    @abc.abstractmethod
    def biases(self) -> np.ndarray | None:
        """``(O,)`` of the weights' dtype, or None for a layer without bias."""

    @abc.abstractmethod
    def load(self) -> bool:
        """Make weights()/biases() available; return False if that failed (the graph then
        raises RuntimeError naming :meth:`label`)."""

    @abc.abstractmethod
    def purge(self) -> None:
        """The graph has copied or bound what it needs; the source may drop its arrays."""

    @abc.abstractmethod
    def label(self) -> str:
        """A name for error messages and checkpoint keys."""

    def update(
        self, gradient_state: GradientState, source_state: WeightsState
    ) -> WeightsState | None:
        """Apply one training step (``-updateWithCommandBuffer:gradientState:sourceState:``).

        ``gradient_state.weight_gradients`` / ``.bias_gradients`` are the batch's gradients;
        ``source_state.weights`` / ``.biases`` are the graph's current parameters (writable).
        Update them in place and return None, or return a :class:`WeightsState` whose arrays
        the graph copies in. The base implementation is never called by the graph: a source
        that does not override it is trained through :attr:`optimizer` (or frozen).
        """
        return None

    def overrides_update(self) -> bool:
        """True if this source's class defines its own :meth:`update` (the graph then calls it
        instead of applying :attr:`optimizer`)."""
        return getattr(type(self), "update", None) is not DataSource.update


class Parameters(NamedTuple):
    """What :func:`read_parameters` returns."""

    descriptor: ConvolutionDescriptor
    weights: np.ndarray  #: (O, in_channels / groups, kH, kW), C-contiguous
    biases: np.ndarray | None  #: (O,) of the weights' dtype, or None
    label: str


_PROTOCOL = ("descriptor", "weights", "biases", "load", "purge", "label")


def read_parameters(source: Any, *, copy: bool = True) -> Parameters:
    """Run the compile-time protocol on ``source`` and validate what it returns.

    Calls ``descriptor(), load(), weights(), biases(), purge()`` in that order. Weights of
    shape ``(O, F)`` are reshaped to ``(O, C/groups, kH, kW)``. With ``copy=True`` the arrays
    are copied before ``purge()``; with ``copy=False`` C-contiguous arrays are returned as
    (views of) the source's own arrays, so the graph can train them in place (other layouts
    are copied). Objects that are not :class:`DataSource` instances are accepted if they have
    all six protocol methods.

    Raises TypeError for a non-source or wrong return types/dtypes, ValueError for shapes that
    do not match the descriptor, RuntimeError if ``load()`` returns False -- each message
    starting with ``[DataSource]`` and naming the source's label.
    """
    if not isinstance(source, DataSource):
        missing = [m for m in _PROTOCOL if not callable(getattr(source, m, None))]
        if missing:
            raise TypeError(
                f"[DataSource] {type(source).__name__} is not a data source: "
                f"missing {', '.join(missing)}"
            )
    label = source.label()
    if not isinstance(label, str):
        raise TypeError(f"[DataSource] label() must return a str, got {type(label).__name__}")
    where = f"[DataSource] {label!r}:"
    desc = source.descriptor()
    if not isinstance(desc, ConvolutionDescriptor):
        raise TypeError(
            f"{where} descriptor() must return a ConvolutionDescriptor, got {type(desc).__name__}"
        )
    ok = source.load()
    if not isinstance(ok, (bool, np.bool_)):
        raise TypeError(f"{where} load() must return a bool, got {type(ok).__name__}")
    if not ok:
        raise RuntimeError(
            f"{where} load() returned False: the data source could not load its weights"
        )

    w = source.weights()
    if not isinstance(w, np.ndarray):
        raise TypeError(f"{where} weights() must return a numpy array, got {type(w).__name__}")
    if w.dtype not in _PARAM_DTYPES:
        raise TypeError(f"{where} weights() must be float32 or float16, got {w.dtype}")
    shape4 = desc.weight_shape
    if w.shape == shape4:
        pass
    elif w.shape == (desc.out_channels, desc.features):
        w = w.reshape(shape4)
    else:
        raise ValueError(
            f"{where} weights() has shape {w.shape}, expected {shape4} (O, C/groups, kH, kW) "
            f"or {(desc.out_channels, desc.features)} (O, F) for {desc!r}"
        )
    b = source.biases()
    if b is not None:
        if not isinstance(b, np.ndarray):
            raise TypeError(
                f"{where} biases() must return a numpy array or None, got {type(b).__name__}"
            )
        if b.dtype != w.dtype:
            raise TypeError(
                f"{where} biases() dtype {b.dtype} does not match the weights' dtype {w.dtype}"
            )
        if b.shape != (desc.out_channels,):
            raise ValueError(
                f"{where} biases() has shape {b.shape}, expected ({desc.out_channels},)"
            )
    if copy:
        w = np.array(w, order="C", copy=True)
        b = None if b is None else np.array(b, order="C", copy=True)
    else:
        w = np.ascontiguousarray(w)
        b = None if b is None else np.ascontiguousarray(b)
    source.purge()
    return Parameters(desc, w, b, label)


# ---------------------------------------------------------------------------------------
# initializers


def he_normal(shape: Sequence[int], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """He / Kaiming normal (for ReLU networks): ``N(0, std)`` with ``std = sqrt(2 / fan_in)``.

    Returns float64 draws from ``rng``."""
    return rng.standard_normal(tuple(shape)) * math.sqrt(2.0 / fan_in)


def glorot_uniform(
    shape: Sequence[int], fan_in: int, fan_out: int, rng: np.random.Generator
) -> np.ndarray:
    """Glorot / Xavier uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``.

    Returns float64 draws from ``rng``."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=tuple(shape))


def initial_weights(
    descriptor: ConvolutionDescriptor, init: str = "he", seed: int = 0, dtype: DTypeLike = "float32"
) -> np.ndarray:
    """Weights ``descriptor.weight_shape`` drawn by ``init`` ("he", "glorot" or "zeros") from
    ``numpy.random.default_rng(seed)``: the same seed gives the same values for either dtype
    (drawn in float64, rounded once)."""
    if not isinstance(descriptor, ConvolutionDescriptor):
        raise TypeError(
            "[initial_weights] descriptor must be a ConvolutionDescriptor, "
            f"got {type(descriptor).__name__}"
        )
    d = _param_dtype("initial_weights", dtype)
    shape = descriptor.weight_shape
    if init == "zeros":
        return np.zeros(shape, dtype=d)
    rng = np.random.default_rng(seed)
    if init == "he":
        w = he_normal(shape, descriptor.fan_in, rng)
    elif init == "glorot":
        w = glorot_uniform(shape, descriptor.fan_in, descriptor.fan_out, rng)
    else:
        raise ValueError(
            f"[initial_weights] init must be one of {', '.join(WEIGHT_INITS)}, got {init!r}"
        )
    return w.astype(d)


# ---------------------------------------------------------------------------------------
# built-in source


class ConvolutionWeights(DataSource):
    """Built-in data source that holds its parameters as numpy arrays.

    ``weight_array`` is ``(O, in_channels / groups, kH, kW)`` and ``bias_array`` ``(O,)`` or
    None, both of ``dtype``. :meth:`load` creates them if absent: weights from
    ``weights_init`` -- "he" (``N(0, sqrt(2 / fan_in))``), "glorot"
    (``U(+-sqrt(6 / (fan_in + fan_out)))``), "zeros", or an explicit array (copied, any float
    dtype, shape OIHW or (O, F)) -- deterministically from ``seed``; biases zero (``bias=True``),
    an explicit ``(O,)`` array, or none (``bias=False``).

    The graph binds these arrays as its parameters and trains them in place, so
    :meth:`purge` is a no-op (the arrays *are* the graph's parameters; dropping them would
    lose training) and :meth:`update` is not overridden: set ``optimizer`` to train the layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 1,
        *,
        stride: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        neuron: str | None = None,
        neuron_a: float | None = None,
        neuron_b: float | None = None,
        weights_init: str | np.ndarray = "he",
        bias: bool | np.ndarray = True,
        optimizer: Optimizer | None = None,
        seed: int = 0,
        label: str | None = None,
        dtype: DTypeLike = "float32",
    ) -> None:
        owner = "ConvolutionWeights"
        self._descriptor = ConvolutionDescriptor._create(
            owner,
            kernel_size=kernel_size,
            in_channels=in_channels,
            out_channels=out_channels,
            stride=stride,
            dilation=dilation,
            groups=groups,
            neuron=neuron,
            neuron_a=neuron_a,
            neuron_b=neuron_b,
        )
        desc = self._descriptor
        self.dtype: np.dtype = _param_dtype(owner, dtype)
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"[{owner}] seed must be an int, got {seed!r}")
        if seed < 0:
            raise ValueError(f"[{owner}] seed must be >= 0, got {seed}")
        self.seed = int(seed)
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"[{owner}] optimizer must be None or an SGD/Adam/RMSProp object, "
                f"got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        if label is not None and (not isinstance(label, str) or not label):
            raise TypeError(f"[{owner}] label must be a non-empty str or None, got {label!r}")
        self._label = label if label is not None else self._default_label()

        # weights_init: a method name, or an explicit array checked against the descriptor now.
        self._init_array: np.ndarray | None = None
        if isinstance(weights_init, str):
            if weights_init not in WEIGHT_INITS:
                raise ValueError(
                    f"[{owner}] weights_init must be one of {', '.join(WEIGHT_INITS)} "
                    f"or an array, got {weights_init!r}"
                )
            self.weights_init = weights_init
        elif isinstance(weights_init, np.ndarray):
            arr = _float_array(owner, "weights_init", weights_init)
            if arr.shape not in (desc.weight_shape, (desc.out_channels, desc.features)):
                raise ValueError(
                    f"[{owner}] weights_init has shape {arr.shape}, expected {desc.weight_shape} "
                    f"(O, C/groups, kH, kW) or {(desc.out_channels, desc.features)} (O, F)"
                )
            self._init_array = np.array(arr, dtype=self.dtype, order="C", copy=True).reshape(
                desc.weight_shape
            )
            self.weights_init = "array"
        else:
            raise TypeError(
                f"[{owner}] weights_init must be 'he', 'glorot', 'zeros' or a numpy array, "
                f"got {type(weights_init).__name__}"
            )

        self._bias_init: np.ndarray | None = None
        if isinstance(bias, (bool, np.bool_)):
            self.has_bias = bool(bias)
        elif isinstance(bias, np.ndarray):
            arr = _float_array(owner, "bias", bias)
            if arr.shape != (desc.out_channels,):
                raise ValueError(
                    f"[{owner}] bias has shape {arr.shape}, expected ({desc.out_channels},)"
                )
            self._bias_init = np.array(arr, dtype=self.dtype, copy=True)
            self.has_bias = True
        else:
            raise TypeError(
                f"[{owner}] bias must be True, False or a numpy array, got {type(bias).__name__}"
            )

        #: The parameters (None until :meth:`load`); the graph binds and trains these arrays.
        self.weight_array: np.ndarray | None = None
        self.bias_array: np.ndarray | None = None

    def _default_label(self) -> str:
        d = self._descriptor
        return f"conv{d.kernel_h}x{d.kernel_w}_{d.in_channels}to{d.out_channels}"

    # -- alternative constructors ------------------------------------------------------

    @classmethod
    def from_arrays(
        cls, weights: np.ndarray, biases: np.ndarray | None = None, **kw: Any
    ) -> ConvolutionWeights:
        """A source holding copies of ``weights`` and ``biases``.

        ``weights`` is ``(O, C/groups, kH, kW)`` (in_channels and kernel_size inferred) or
        ``(O, F)`` (kernel_size defaults to 1, in_channels to ``F * groups / (kH * kW)``); any
        given ``in_channels`` / ``kernel_size`` / ``out_channels`` must agree with it. ``dtype``
        defaults to the weights' dtype when float16/float32, else float32. Other keyword
        arguments are those of ``__init__`` (not ``weights_init`` or ``bias``).
        """
        owner = "ConvolutionWeights"
        for k in ("weights_init", "bias"):
            if k in kw:
                raise TypeError(
                    f"[{owner}] from_arrays takes the parameters as weights/biases, not {k}="
                )
        w = _float_array(owner, "weights", weights)
        if biases is not None:
            _float_array(owner, "biases", biases)
        groups = kw.get("groups", 1)
        g = _positive_int(owner, "groups", groups)
        if w.ndim == 4:
            o, cg, kh, kw_ = w.shape
            kernel = kw.pop("kernel_size", (kh, kw_))
            if _int_pair(owner, "kernel_size", kernel) != (kh, kw_):
                raise ValueError(
                    f"[{owner}] kernel_size {kernel!r} does not match weights shape {w.shape}"
                )
            in_channels = kw.pop("in_channels", cg * g)
            if in_channels != cg * g:
                raise ValueError(
                    f"[{owner}] in_channels={in_channels} does not match weights shape {w.shape} "
                    f"(C/groups = {cg}, groups = {g})"
                )
        elif w.ndim == 2:
            o, f = w.shape
            kernel = kw.pop("kernel_size", 1)
            kh, kw_ = _int_pair(owner, "kernel_size", kernel)
            if f % (kh * kw_):
                raise ValueError(
                    f"[{owner}] weights shape {w.shape}: F = {f} is not a multiple of "
                    f"kH*kW = {kh * kw_}"
                )
            in_channels = kw.pop("in_channels", f // (kh * kw_) * g)
            if isinstance(in_channels, (int, np.integer)) and in_channels * kh * kw_ != f * g:
                raise ValueError(
                    f"[{owner}] in_channels={in_channels} does not match weights shape {w.shape} "
                    f"(F = in_channels / groups * kH * kW = {f}, groups = {g}, "
                    f"kernel = {(kh, kw_)})"
                )
        else:
            raise ValueError(
                f"[{owner}] weights must be 4-D (O, C/groups, kH, kW) or 2-D (O, F), "
                f"got shape {w.shape}"
            )
        out = kw.pop("out_channels", o)
        if out != o:
            raise ValueError(f"[{owner}] out_channels={out} does not match weights shape {w.shape}")
        if "dtype" not in kw:
            kw["dtype"] = w.dtype if w.dtype in _PARAM_DTYPES else np.float32
        # __init__ checks the shape against the full descriptor (groups, (O, F) features).
        return cls(
            in_channels,
            out,
            kernel,
            weights_init=w,
            bias=biases if biases is not None else False,
            **kw,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike, label: str, **kw: Any) -> ConvolutionWeights:
        """Read ``label``'s parameters from a checkpoint (see :mod:`metalnn.graph.checkpoint`).

        Arrays are ``parameter_key(label, "weights")`` and, if present, ``"<label>/biases"``;
        the descriptor comes from the metadata's ``layers[label]`` (written by :meth:`save`)
        when present, else it is inferred as in :meth:`from_arrays` (pass ``stride`` etc.).
        Raises ValueError("[ConvolutionWeights] ...") if the label is not in the file.
        """
        owner = "ConvolutionWeights"
        if not isinstance(label, str) or not label:
            raise TypeError(f"[{owner}] label must be a non-empty str, got {label!r}")
        arrays, meta = _checkpoint.load_arrays(path)
        wkey = _checkpoint.parameter_key(label, "weights")
        if wkey not in arrays:
            labels = sorted({k.rsplit("/", 1)[0] for k in arrays if k.endswith("/weights")})
            raise ValueError(
                f"[{owner}] label {label!r} not found in {os.fspath(path)!r} "
                f"(layers there: {', '.join(labels) or 'none'})"
            )
        biases = arrays.get(_checkpoint.parameter_key(label, "biases"))
        layers = meta.get("layers")
        if isinstance(layers, Mapping) and isinstance(layers.get(label), Mapping):
            d = ConvolutionDescriptor.from_dict(layers[label])
            fields = d.to_dict()
            fields.update(kw)
            kw = fields
        kw.setdefault("label", label)
        return cls.from_arrays(arrays[wkey], biases, **kw)

    def save(self, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> None:
        """Write this source's arrays and descriptor to a checkpoint (see :meth:`from_file`);
        ``metadata`` (JSON) is stored alongside under the user metadata, beside ``layers``."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(
                f"[ConvolutionWeights] metadata must be a dict, got {type(metadata).__name__}"
            )
        if metadata is not None and "layers" in metadata:
            raise ValueError(
                "[ConvolutionWeights] metadata key 'layers' is reserved for the descriptors"
            )
        self.load()
        assert self.weight_array is not None  # load() always creates it
        arrays = {_checkpoint.parameter_key(self._label, "weights"): self.weight_array}
        if self.bias_array is not None:
            arrays[_checkpoint.parameter_key(self._label, "biases")] = self.bias_array
        user = dict(metadata or {})
        user["layers"] = {self._label: self._descriptor.to_dict()}
        _checkpoint.save_arrays(path, arrays, user)

    # -- protocol ----------------------------------------------------------------------

    def descriptor(self) -> ConvolutionDescriptor:
        return self._descriptor

    def load(self) -> bool:
        """Create the arrays if absent (deterministic from ``seed``); always succeeds."""
        if self.weight_array is None:
            if self._init_array is not None:
                self.weight_array = self._init_array.copy()
            else:
                self.weight_array = initial_weights(
                    self._descriptor, self.weights_init, self.seed, self.dtype
                )
        if self.has_bias and self.bias_array is None:
            if self._bias_init is not None:
                self.bias_array = self._bias_init.copy()
            else:
                self.bias_array = np.zeros(self._descriptor.out_channels, dtype=self.dtype)
        return True

    def weights(self) -> np.ndarray:
        self.load()
        assert self.weight_array is not None
        return self.weight_array

    def biases(self) -> np.ndarray | None:
        self.load()
        return self.bias_array

    def purge(self) -> None:
        """No-op: the arrays back the graph's parameters directly (see class docstring)."""

    def label(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return (
            f"ConvolutionWeights({self._descriptor!r}, dtype={self.dtype.name}, "
            f"bias={self.has_bias}, label={self._label!r}, optimizer={self.optimizer!r})"
        )
