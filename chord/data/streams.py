"""Deterministic, resumable batch streams over a fixed list (epoch-wise shuffles from a seed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class ShuffledStream(Generic[T]):
    """Yields batches from a permutation per epoch, seeded by (seed, epoch); batches may span epochs.

    Within an epoch every item appears exactly once. state_dict() captures (epoch, position), so a
    resumed stream yields exactly the batches the uninterrupted one would have.
    """

    def __init__(self, items: Sequence[T], seed: int, name: str) -> None:
        if len(items) == 0:
            raise ValueError(f"{name}: no usable rows")
        self.items, self.seed, self.name = items, seed, name
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.items))

    def next_batch(self, n: int) -> list[T]:
        out: list[T] = []
        while len(out) < n:
            if self.position == len(self.items):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = min(n - len(out), len(self.items) - self.position)
            out.extend(self.items[i] for i in self._order[self.position : self.position + take])
            self.position += take
        return out

    def state_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_items": len(self.items)}

    def load_state_dict(self, state: dict) -> None:
        if state["num_items"] != len(self.items):
            raise ValueError(f"{self.name}: checkpoint stream has {state['num_items']} rows, "
                             f"data has {len(self.items)}")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)
