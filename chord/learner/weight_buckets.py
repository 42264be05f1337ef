"""Weight buckets for the learner -> rollout-engine push (docs/architecture.md#weight-push).

Parameters go in model order (layer by layer) in buckets of at most `limit` bytes; a tensor larger
than the limit gets a bucket of its own. ZeRO-3 gathers one bucket's parameters in one call, and the
engine loads one bucket at a time, so a push holds at most one bucket of extra memory, not the model.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_buckets(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive index groups whose byte sizes sum to <= limit (a single oversized item alone)."""
    if limit <= 0:
        raise ValueError(f"bucket limit must be > 0 bytes, got {limit}")
    buckets: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if cur and used + size > limit:
            buckets.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += size
    if cur:
        buckets.append(cur)
    return buckets
