"""Gradient buckets: gradients in the order the gradient pass produces them (reverse layer
order), grouped until a bucket holds ``bucket_bytes``; one all-reduce per bucket."""

from __future__ import annotations

from collections.abc import Sequence


def plan_buckets(sizes: Sequence[int], bucket_bytes: int, first_bucket_bytes: int | None = None) -> list[list[int]]:
    """Indices into ``sizes`` (bytes of each gradient, in production order) grouped into
    buckets of about ``bucket_bytes``: a bucket closes once it reaches the size, so a gradient
    larger than that gets a bucket of its own and no bucket is empty. The first bucket closes
    at ``first_bucket_bytes`` (default: ``bucket_bytes``): a small first bucket starts
    communicating early, while most of the gradient pass is still ahead."""
    first = bucket_bytes if first_bucket_bytes is None else first_bucket_bytes
    for name, v in (("bucket size", bucket_bytes), ("first bucket size", first)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"[distributed] {name} must be a positive number of bytes, got {v!r}")
    buckets: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for i, n in enumerate(sizes):
        if n < 0:
            raise ValueError(f"[distributed] gradient {i} has a negative size {n}")
        current.append(i)
        filled += n
        if filled >= (bucket_bytes if buckets else first):
            buckets.append(current)
            current, filled = [], 0
    if current:
        buckets.append(current)
    return buckets


def start_positions(buckets: list[list[int]], produced_at: Sequence[int]) -> list[int]:
    """For each bucket, the index of the step after which its all-reduce may start: the step
    that produces the bucket's last gradient."""
    return [max(produced_at[i] for i in b) for b in buckets]
