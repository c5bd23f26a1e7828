"""Optimizer descriptors for the graph API, as MPSNNOptimizerStochasticGradientDescent,
MPSNNOptimizerAdam and MPSNNOptimizerRMSProp.

An optimizer object only *describes* an update rule: its hyperparameters and the names of the
per-parameter state arrays it needs. The graph reads :meth:`Optimizer.hyperparameters` and
:meth:`Optimizer.state_names` to run the rule in C++ (fast path); :meth:`Optimizer.step` applies
the same rule from Python through the kernels :func:`metalnn.ops.sgd_step`,
:func:`metalnn.ops.adam_step` and :func:`metalnn.ops.rmsprop_step` (user code and the fallback
path). Weights and optimizer state are updated **in place**.

Every optimizer shares MPS's gradient preprocessing (``MPSNNOptimizerDescriptor``)::

    g = gradient_rescale * gradients
    g = clamp(g, lo, hi)            if gradient_clip = (lo, hi)
    g = g + weight_decay * w        regularization="l2"
    g = g + weight_decay * sign(w)  regularization="l1"   (sign(0) = 0)
    g unchanged                     regularization="none"

(``MPSNNRegularizationType`` none / L1 / L2; ``weight_decay`` is MPS's regularizationScale.)

Per-layer learning rate: a data source may carry ``learning_rate_scale`` (a float >= 0, default
1); the graph updates that layer's weights and biases with ``learning_rate *
learning_rate_scale`` in the same multi-tensor update as the other layers (``0`` freezes the
layer while its gradients still flow). :meth:`Optimizer.step_many` takes the same factors as
``learning_rate_scales``.

Arguments are validated in ``__init__``; a bad value raises ValueError (TypeError for a wrong
type) whose message starts with ``[SGD]`` / ``[Adam]`` / ``[RMSProp]`` and names the argument.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..ops import optimizer as _kernels
from ._validate import integer, is_real

__all__ = ["Optimizer", "SGD", "Adam", "RMSProp", "optimizer_from_dict", "learning_rate_scale"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_REGULARIZATIONS = ("l2", "l1", "none")


def _real(owner: str, name: str, value: Any) -> float:
    """A finite real number that fits float32 (the kernels compute in float32)."""
    if not is_real(value):
        raise TypeError(
            f"[{owner}] {name} must be a real number, got {type(value).__name__} {value!r}"
        )
    v = float(value)
    if not math.isfinite(v) or abs(v) > _FLOAT32_MAX:
        raise ValueError(f"[{owner}] {name} must be finite (and fit float32), got {value!r}")
    return v


def _non_negative(owner: str, name: str, value: Any) -> float:
    v = _real(owner, name, value)
    if v < 0:
        raise ValueError(f"[{owner}] {name} must be >= 0, got {value!r}")
    return v


def _positive(owner: str, name: str, value: Any) -> float:
    v = _real(owner, name, value)
    # 1e-50 is > 0 in float64 but 0 in float32, where the kernels divide by it.
    if not (v > 0 and np.float32(v) > 0):
        raise ValueError(f"[{owner}] {name} must be > 0 (in float32), got {value!r}")
    return v


def _unit_interval(owner: str, name: str, value: Any) -> float:
    v = _real(owner, name, value)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"[{owner}] {name} must be in [0, 1), got {value!r}")
    return v


def _flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"[{owner}] {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _clip(owner: str, value: Any) -> tuple[float, float] | None:
    """None or (lo, hi) with lo <= hi; an infinite bound clips one side only, NaN is refused."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"[{owner}] gradient_clip must be None or a pair (min, max), got {value!r}")
    bounds = []
    for which, b in zip(("min", "max"), value):
        if not is_real(b):
            raise TypeError(f"[{owner}] gradient_clip {which} must be a real number, got {b!r}")
        bounds.append(float(b))
    lo, hi = bounds
    if math.isnan(lo) or math.isnan(hi) or not lo <= hi:
        raise ValueError(
            f"[{owner}] gradient_clip must be (min, max) with min <= max, got {value!r}"
        )
    return lo, hi


def learning_rate_scale(source: Any, label: str | None = None) -> float:
    """A data source's ``learning_rate_scale`` (1.0 when it has none), checked: a finite real
    number >= 0 that fits float32; errors read ``[Graph] node '<label>': learning_rate_scale ...``."""
    value = getattr(source, "learning_rate_scale", 1.0)
    name = f"node '{label}': learning_rate_scale" if label else "learning_rate_scale"
    return _non_negative("Graph", name, value)


class Optimizer(abc.ABC):
    """Base class of the optimizer descriptors (as ``MPSNNOptimizer``).

    Subclasses define :attr:`kind` (the kernel family: ``mnn.ops.<kind>_step``), ``_rule``
    (the names of their own :meth:`hyperparameters`), :meth:`state_names`, and ``_kernel`` /
    ``_kernel_many`` / ``_state_arguments`` (how :meth:`step` and :meth:`step_many` call the
    kernels). The common arguments are those of ``MPSNNOptimizerDescriptor``: ``weight_decay``
    (regularizationScale, >= 0), ``regularization`` ("l2", "l1" or "none"), ``gradient_rescale``
    (finite) and ``gradient_clip`` (None or (min, max)). Only :attr:`learning_rate` may change
    after construction (for schedules); everything else is read-only so a validated optimizer
    stays valid.
    """

    kind: ClassVar[str] = ""
    #: The rule's own hyperparameters (properties of these names), after ``learning_rate`` and
    #: in the kernel's keyword order.
    _rule: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        learning_rate: float,
        *,
        weight_decay: float = 0.0,
        regularization: str = "l2",
        gradient_rescale: float = 1.0,
        gradient_clip: tuple[float, float] | None = None,
    ) -> None:
        owner = type(self).__name__
        self._learning_rate = _non_negative(owner, "learning_rate", learning_rate)
        self._weight_decay = _non_negative(owner, "weight_decay", weight_decay)
        if not isinstance(regularization, str):
            raise TypeError(
                f"[{owner}] regularization must be a str ('l2', 'l1' or 'none'), got {regularization!r}"
            )
        if regularization not in _REGULARIZATIONS:
            raise ValueError(
                f"[{owner}] regularization must be 'l2', 'l1' or 'none', got {regularization!r}"
            )
        self._regularization = regularization
        self._gradient_rescale = _real(owner, "gradient_rescale", gradient_rescale)
        self._gradient_clip = _clip(owner, gradient_clip)

    # -- hyperparameters ---------------------------------------------------------------

    @property
    def learning_rate(self) -> float:
        """Step size (>= 0); settable, e.g. for a learning-rate schedule between batches."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = _non_negative(type(self).__name__, "learning_rate", value)

    @property
    def weight_decay(self) -> float:
        return self._weight_decay

    @property
    def regularization(self) -> str:
        return self._regularization

    @property
    def gradient_rescale(self) -> float:
        return self._gradient_rescale

    @property
    def gradient_clip(self) -> tuple[float, float] | None:
        return self._gradient_clip

    def _common(self) -> dict[str, Any]:
        return {
            "weight_decay": self._weight_decay,
            "gradient_rescale": self._gradient_rescale,
            "gradient_clip": self._gradient_clip,
            "regularization": self._regularization,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """Keyword arguments of ``mnn.ops.<kind>_step`` (everything but tensors and ``step``)."""
        rule = {name: getattr(self, name) for name in self._rule}
        return {"learning_rate": self._learning_rate, **rule, **self._common()}

    @abc.abstractmethod
    def state_names(self) -> tuple[str, ...]:
        """Names of the float32 state arrays one parameter tensor needs, in kernel order."""

    # -- state and update --------------------------------------------------------------

    def init_state(self, weights: Any) -> dict[str, np.ndarray]:
        """Fresh state for one parameter tensor: ``{name: zeros(weights.shape, float32)}``.

        ``weights`` may be a numpy array or a :class:`metalnn.Tensor` (only its shape is used).
        """
        shape = getattr(weights, "shape", None)
        if shape is None:
            raise TypeError(
                f"[{type(self).__name__}] weights must be an array with a shape, "
                f"got {type(weights).__name__}"
            )
        return {name: np.zeros(tuple(shape), dtype=np.float32) for name in self.state_names()}

    def _state_arrays(self, state: Any, what: str = "state") -> list[Any]:
        owner = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(
                f"[{owner}] {what} must be a dict of state arrays, got {type(state).__name__}"
            )
        names = self.state_names()
        missing = [n for n in names if n not in state]
        if missing:
            raise ValueError(
                f"[{owner}] {what} is missing {', '.join(repr(n) for n in missing)} "
                f"(expected keys: {', '.join(names) or 'none'}; see init_state)"
            )
        return [state[n] for n in names]

    def _step_number(self, step: Any) -> int:
        owner = type(self).__name__
        t = integer(owner, "step", step)
        if t < 1:
            raise ValueError(
                f"[{owner}] step must be >= 1 (1-based: the first update is step 1), got {t}"
            )
        return t

    #: ``mnn.ops.<kind>_step`` and ``mnn.ops.<kind>_step_many``, run by :meth:`step` and
    #: :meth:`step_many` through :meth:`_run_kernel`.
    _kernel: ClassVar[Callable[..., None]]
    _kernel_many: ClassVar[Callable[..., None]]

    @abc.abstractmethod
    def _state_arguments(self, states: list[Any], t: int) -> tuple[list[Any], dict[str, Any]]:
        """The kernel's positional arguments after weights and gradients, and its keywords other
        than the hyperparameters, from the state arrays (or lists of them) in
        :meth:`state_names` order and the checked step ``t``."""

    def _run_kernel(
        self, kernel: Callable[..., None], weights: Any, gradients: Any, states: list[Any], t: int,
        **extra: Any,
    ) -> None:
        """Call ``kernel`` (the single or ``_many`` form) with the state arrays, or lists of
        them, the checked step ``t`` and the keywords ``extra``."""
        positional, keywords = self._state_arguments(states, t)
        kernel(weights, gradients, *positional, **keywords, **self.hyperparameters(), **extra)

    def step(self, weights: Any, gradients: Any, state: Mapping[str, Any], step: int) -> None:
        """Apply one update to ``weights`` and ``state`` in place.

        ``state`` is the dict from :meth:`init_state`; ``step`` is the 1-based update count
        (used by Adam's bias correction; checked but unused by SGD and RMSProp).
        """
        t = self._step_number(step)
        self._run_kernel(self._kernel, weights, gradients, self._state_arrays(state), t)

    def step_many(
        self,
        weights: Sequence[Any],
        gradients: Sequence[Any],
        states: Sequence[Mapping[str, Any]],
        step: int,
        learning_rate_scales: Sequence[float] | None = None,
    ) -> None:
        """:meth:`step` on every parameter tensor at once (one multi-tensor kernel call);
        tensor i uses ``learning_rate * learning_rate_scales[i]`` when the scales are given."""
        t = self._step_number(step)
        cols = self._states_many(weights, states)
        extra = {} if learning_rate_scales is None else {"learning_rate_scales": list(learning_rate_scales)}
        self._run_kernel(self._kernel_many, list(weights), list(gradients), cols, t, **extra)

    def _states_many(self, weights: Sequence[Any], states: Any) -> list[list[Any]]:
        """Per-state-name lists: [[m0, m1, ...], [v0, v1, ...]]."""
        owner = type(self).__name__
        if isinstance(states, Mapping) or not isinstance(states, Sequence):
            raise TypeError(
                f"[{owner}] states must be a list of state dicts, got {type(states).__name__}"
            )
        if len(states) != len(weights):
            raise ValueError(
                f"[{owner}] states must have one dict per weight ({len(weights)}), "
                f"got {len(states)}"
            )
        rows = [self._state_arrays(s, f"states[{i}]") for i, s in enumerate(states)]
        return [list(col) for col in zip(*rows)] if rows else [[] for _ in self.state_names()]

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: ``{"kind": ..., **hyperparameters()}`` (clip as a list)."""
        d: dict[str, Any] = {"kind": self.kind, **self.hyperparameters()}
        if d["gradient_clip"] is not None:
            d["gradient_clip"] = list(d["gradient_clip"])
        return d

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.hyperparameters() == other.hyperparameters()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # learning_rate is mutable

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (MPSNNOptimizerStochasticGradientDescent).

    After the common preprocessing (module docstring), with v the momentum buffer::

        v = momentum * v - learning_rate * g
        w = w + v                                   (nesterov=False)
        w = w + momentum * v - learning_rate * g    (nesterov=True, v the new value)

    With ``momentum == 0`` this is ``w -= learning_rate * g`` and no state is kept
    (:meth:`state_names` is empty). Ranges: learning_rate >= 0, 0 <= momentum < 1;
    ``nesterov=True`` needs momentum > 0.
    """

    kind: ClassVar[str] = "sgd"
    _rule: ClassVar[tuple[str, ...]] = ("momentum", "nesterov")

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        *,
        weight_decay: float = 0.0,
        regularization: str = "l2",
        gradient_rescale: float = 1.0,
        gradient_clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            regularization=regularization,
            gradient_rescale=gradient_rescale,
            gradient_clip=gradient_clip,
        )
        self._momentum = _unit_interval("SGD", "momentum", momentum)
        self._nesterov = _flag("SGD", "nesterov", nesterov)
        if self._nesterov and self._momentum == 0.0:
            raise ValueError("[SGD] nesterov=True needs momentum > 0, got momentum=0")

    @property
    def momentum(self) -> float:
        return self._momentum

    @property
    def nesterov(self) -> bool:
        return self._nesterov

    def state_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self._momentum > 0 else ()

    _kernel = staticmethod(_kernels.sgd_step)
    _kernel_many = staticmethod(_kernels.sgd_step_many)

    def _state_arguments(self, states: list[Any], t: int) -> tuple[list[Any], dict[str, Any]]:
        return [states[0] if states else None], {}  # no momentum buffer without momentum


class Adam(Optimizer):
    """Adam / AMSGrad (MPSNNOptimizerAdam), after the common preprocessing; t = ``step``.

    The update is that of :func:`metalnn.ops.adam_step` (whose docstring has the full rule):
    moments ``m`` and ``v`` of g and g**2, then
    ``w -= lr_t * m / (sqrt(v_hat) + epsilon)`` with the bias-corrected
    ``lr_t = learning_rate * sqrt(1 - beta2**t) / (1 - beta1**t)`` and ``v_hat = v``, or the
    running maximum ``v_max`` with amsgrad. As in MPS, epsilon is added to sqrt(v_hat) without
    bias correction. State: ``m``, ``v`` and, with amsgrad only, ``v_max``. Ranges:
    learning_rate >= 0, 0 <= beta1, beta2 < 1, epsilon > 0.
    """

    kind: ClassVar[str] = "adam"
    _rule: ClassVar[tuple[str, ...]] = ("beta1", "beta2", "epsilon", "amsgrad")

    def __init__(
        self,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        amsgrad: bool = False,
        *,
        weight_decay: float = 0.0,
        regularization: str = "l2",
        gradient_rescale: float = 1.0,
        gradient_clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            regularization=regularization,
            gradient_rescale=gradient_rescale,
            gradient_clip=gradient_clip,
        )
        self._beta1 = _unit_interval("Adam", "beta1", beta1)
        self._beta2 = _unit_interval("Adam", "beta2", beta2)
        self._epsilon = _positive("Adam", "epsilon", epsilon)
        self._amsgrad = _flag("Adam", "amsgrad", amsgrad)

    @property
    def beta1(self) -> float:
        return self._beta1

    @property
    def beta2(self) -> float:
        return self._beta2

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @property
    def amsgrad(self) -> bool:
        return self._amsgrad

    def state_names(self) -> tuple[str, ...]:
        return ("m", "v", "v_max") if self._amsgrad else ("m", "v")

    _kernel = staticmethod(_kernels.adam_step)
    _kernel_many = staticmethod(_kernels.adam_step_many)

    def _state_arguments(self, states: list[Any], t: int) -> tuple[list[Any], dict[str, Any]]:
        return [states[0], states[1], t], {"v_max": states[2] if self._amsgrad else None}


class RMSProp(Optimizer):
    """RMSProp (MPSNNOptimizerRMSProp), after the common preprocessing; s the mean square::

        s = decay * s + (1 - decay) * g**2
        w = w - learning_rate * g / (sqrt(s) + epsilon)

    State: ``s``. Ranges: learning_rate >= 0, 0 <= decay < 1, epsilon > 0.
    """

    kind: ClassVar[str] = "rmsprop"
    _rule: ClassVar[tuple[str, ...]] = ("decay", "epsilon")

    def __init__(
        self,
        learning_rate: float = 1e-3,
        decay: float = 0.9,
        epsilon: float = 1e-8,
        *,
        weight_decay: float = 0.0,
        regularization: str = "l2",
        gradient_rescale: float = 1.0,
        gradient_clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            regularization=regularization,
            gradient_rescale=gradient_rescale,
            gradient_clip=gradient_clip,
        )
        self._decay = _unit_interval("RMSProp", "decay", decay)
        self._epsilon = _positive("RMSProp", "epsilon", epsilon)

    @property
    def decay(self) -> float:
        return self._decay

    @property
    def epsilon(self) -> float:
        return self._epsilon

    def state_names(self) -> tuple[str, ...]:
        return ("s",)

    _kernel = staticmethod(_kernels.rmsprop_step)
    _kernel_many = staticmethod(_kernels.rmsprop_step_many)

    def _state_arguments(self, states: list[Any], t: int) -> tuple[list[Any], dict[str, Any]]:
        (s,) = states
        return [s], {}


_KINDS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSProp}


def optimizer_from_dict(d: Mapping[str, Any]) -> Optimizer:
    """Inverse of :meth:`Optimizer.to_dict` (e.g. from checkpoint metadata); validates as
    ``__init__`` does."""
    if not isinstance(d, Mapping):
        raise TypeError(f"[Optimizer] expected a dict from to_dict(), got {type(d).__name__}")
    kw = dict(d)
    kind = kw.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"[Optimizer] kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    if kw.get("gradient_clip") is not None:
        kw["gradient_clip"] = tuple(kw["gradient_clip"])
    try:
        return cls(**kw)
    except TypeError as e:
        if str(e).startswith(f"[{cls.__name__}]"):
            raise
        raise TypeError(f"[{cls.__name__}] unexpected field in optimizer dict: {e}") from None
