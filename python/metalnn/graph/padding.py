"""Padding policies, resolved at graph build time from the input size (as MPSNNPadding).

A policy is one of:

- ``"same"``: output size ``ceil(input / stride)``; the total padding
  ``max((out - 1) * stride + (kernel - 1) * dilation + 1 - input, 0)`` is split with the
  odd pixel at the bottom/right (``Padding.same()``);
- ``"valid"``: no padding, output ``(input - (kernel - 1) * dilation - 1) // stride + 1``;
- an int ``p``, a pair ``(ph, pw)`` or explicit ``(top, bottom, left, right)``;
- a callable ``f(input_hw, kernel_hw, stride_hw, dilation_hw) -> (top, bottom, left, right)``,
  the counterpart of a custom MPSNNPadding object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Union

PaddingSpec = Union[str, int, tuple, "Padding", Callable]


class Padding:
    """A padding policy; build with :meth:`same`, :meth:`valid`, :meth:`explicit` or :meth:`custom`."""

    def __init__(self, kind: str, values: tuple[int, int, int, int] | None = None, fn: Callable | None = None):
        self.kind, self.values, self.fn = kind, values, fn

    @classmethod
    def same(cls) -> Padding:
        return cls("same")

    @classmethod
    def valid(cls) -> Padding:
        return cls("valid")

    @classmethod
    def explicit(cls, top: int, bottom: int, left: int, right: int) -> Padding:
        return cls("explicit", (int(top), int(bottom), int(left), int(right)))

    @classmethod
    def custom(cls, fn: Callable) -> Padding:
        return cls("custom", fn=fn)

    @classmethod
    def of(cls, spec: PaddingSpec, owner: str = "padding") -> Padding:
        """Normalises any accepted spelling; raises ValueError naming ``owner``."""
        if isinstance(spec, Padding):
            return spec
        if isinstance(spec, str):
            if spec in ("same", "valid"):
                return cls(spec)
            raise ValueError(f"[{owner}] padding: unknown policy {spec!r} (expected 'same', 'valid', "
                             "numbers or a callable)")
        if callable(spec):
            return cls.custom(spec)
        if isinstance(spec, int) and not isinstance(spec, bool):
            return cls.explicit(spec, spec, spec, spec)
        if isinstance(spec, (tuple, list)) and all(isinstance(v, int) for v in spec):
            if len(spec) == 2:
                return cls.explicit(spec[0], spec[0], spec[1], spec[1])
            if len(spec) == 4:
                return cls.explicit(*spec)
        raise ValueError(f"[{owner}] padding must be 'same', 'valid', an int, (ph, pw), "
                         f"(top, bottom, left, right) or a callable, got {spec!r}")

    def resolve(self, input_hw: Sequence[int], kernel_hw: Sequence[int], stride_hw: Sequence[int],
                dilation_hw: Sequence[int] = (1, 1), owner: str = "padding") -> tuple[int, ...]:
        """(top, bottom, left, right) for this input size."""
        pads: tuple[int, ...]
        if self.kind == "valid":
            pads = (0, 0, 0, 0)
        elif self.kind == "same":
            halves: list[int] = []
            for size, k, s, d in zip(input_hw, kernel_hw, stride_hw, dilation_hw):
                out = -(-size // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                halves += [total // 2, total - total // 2]
            pads = tuple(halves)
        elif self.kind == "explicit" and self.values is not None:
            pads = self.values
        elif self.fn is not None:
            custom = self.fn(tuple(input_hw), tuple(kernel_hw), tuple(stride_hw), tuple(dilation_hw))
            if not (isinstance(custom, (tuple, list)) and len(custom) == 4 and all(isinstance(p, int) for p in custom)):
                raise ValueError(f"[{owner}] custom padding must return (top, bottom, left, right) ints, "
                                 f"got {custom!r}")
            pads = tuple(custom)
        else:  # only a Padding(...) built by hand can lack its values or function
            raise ValueError(f"[{owner}] padding {self!r} has no values or function to resolve")
        if any(p < 0 for p in pads):
            raise ValueError(f"[{owner}] padding must be >= 0, got {pads}")
        return pads

    def __repr__(self) -> str:
        if self.kind == "explicit":
            return f"Padding.explicit{self.values}"
        return f"Padding.{self.kind}()"
