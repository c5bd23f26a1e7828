"""Batches for code that drives kernels itself (MPSImageBatch, MPSStateBatch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._core import State


class ImageBatch(Sequence):
    """A batch of images of one shape and dtype (MPSImageBatch).

    Built from one ``(N, C, H, W)`` array (kept without a copy when C-contiguous) or a
    list of ``(C, H, W)`` images (stacked once). Indexing gives image views; kernels and
    graphs take the batch wherever they take an array (``np.asarray(batch)`` is free).
    """

    def __init__(self, images):
        if isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise ValueError(f"[ImageBatch] expected an (N, C, H, W) array, got shape {images.shape}")
            self._array = np.ascontiguousarray(images)
        else:
            images = list(images)
            if not images:
                raise ValueError("[ImageBatch] a batch needs at least one image")
            first = np.asarray(images[0])
            for i, im in enumerate(images):
                im = np.asarray(im)
                if im.ndim != 3 or im.shape != first.shape or im.dtype != first.dtype:
                    raise ValueError(f"[ImageBatch] image {i} has shape {im.shape} {im.dtype}; every image must be "
                                     f"(C, H, W) like image 0: {first.shape} {first.dtype}")
            self._array = np.stack(images)
        if self._array.dtype not in (np.float32, np.float16):
            raise TypeError(f"[ImageBatch] images must be float32 or float16, got {self._array.dtype}")

    @property
    def array(self) -> np.ndarray:
        """The batch as one (N, C, H, W) array (shared, not copied)."""
        return self._array

    @property
    def shape(self) -> tuple:
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    def __len__(self) -> int:
        return self._array.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ImageBatch(self._array[i])
        return self._array[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._array)

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageBatch({len(self)} images of {self._array.shape[1:]} {self._array.dtype})"


class StateBatch(Sequence):
    """States handed from forward to gradient kernels for a batch (MPSStateBatch).

    metalnn's forward kernels return one state per batch; a StateBatch groups the states
    of several forward calls (for example one per image when driving kernels image by
    image) and checks they all come from the same kind of forward op.
    """

    def __init__(self, states: Sequence[State]):
        states = list(states)
        for i, s in enumerate(states):
            if not isinstance(s, State):
                raise TypeError(f"[StateBatch] entry {i} is {type(s).__name__}, not a metalnn State")
        ops = {s.source_op for s in states}
        if len(ops) > 1:
            raise ValueError(f"[StateBatch] states come from different ops: {sorted(ops)}")
        self._states = states

    @property
    def source_op(self) -> str | None:
        return self._states[0].source_op if self._states else None

    def __len__(self) -> int:
        return len(self._states)

    def __getitem__(self, i):
        return self._states[i]

    def __iter__(self) -> Iterator[State]:
        return iter(self._states)

    def __repr__(self) -> str:
        return f"StateBatch({len(self)} states from {self.source_op})"
