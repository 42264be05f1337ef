"""Deterministic, resumable batch streams over a fixed list (epoch-wise shuffles from a seed), and weighted
mixtures of such streams (data.prompts.mixture, data.expert.mixture; docs/usage.md#mixtures-of-sources)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

from chord.data.json_rows import DataError

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

    def batch_metrics(self) -> dict[str, float]:
        return {}  # one source: nothing to break down (MixedStream reports each source's share)

    def load_state_dict(self, state: dict) -> None:
        if "sources" in state:
            raise DataError(f"{self.name}: the checkpoint's stream mixes {len(state['sources'])} sources "
                            "(data.*.mixture), this run reads one")
        if state["num_items"] != len(self.items):
            raise DataError(f"{self.name}: checkpoint stream has {state['num_items']} rows, "
                            f"data has {len(self.items)}")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)


def _weights(pairs) -> str:
    return ", ".join(f"{label}={w:g}" for label, w in pairs)


def mixture_seed(seed: int, source: int) -> int:
    """Source i's shuffle seed in a mixture: independent of the others' (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([seed, source]).generate_state(1)[0])


class MixedStream(Generic[T]):
    """Batches drawn from several ShuffledStreams (one per source) in proportion to their weights.

    Which source the n-th item comes from is a pure function of how many items each source has given so far,
    by Tijdeman's rule for the chairman assignment problem (R. Tijdeman, Discrete Math. 32 (1980) 323-330):
    with shares p_i = w_i / sum(w), k sources and s = 1 / (2k - 2), among the sources whose deficit
    n p_i - c_i is at least s, take the one whose next item is due first, min (1 - s + c_i) / p_i. Every source
    then stays within 1 - s (< 1) items of its exact share n p_i at every n. Why not a seeded multinomial
    draw: its realised shares wander by O(sqrt(n)), and a small batch can miss a light source entirely; here a
    batch of B items holds B p_i of source i to within 2 items, and the state is integer counts, so a resumed
    stream is the same stream. (nginx's smooth weighted round-robin, argmax of the deficit, drifts past one
    item with three or more sources.) The order within each source is its ShuffledStream's: a permutation per
    epoch of that source, seeded by (mixture_seed(seed, i), epoch).

    An epoch of a mixture (trainer.epochs) is as many items as its sources hold together; with weights
    proportional to the sources' sizes that is one pass over each, otherwise a heavier source repeats rows
    within the epoch while a lighter one is partly seen.
    """

    def __init__(self, streams: Sequence[ShuffledStream[T]], weights: Sequence[float], labels: Sequence[str],
                 name: str) -> None:
        if not (len(streams) == len(weights) == len(labels) >= 1):
            raise ValueError(f"{name}: {len(streams)} streams, {len(weights)} weights, {len(labels)} labels")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"{name}: weights must be finite and > 0, got {list(weights)}")
        self.streams, self.labels, self.name = list(streams), list(labels), name
        self.weights = [float(w) for w in weights]
        total = sum(self.weights)
        self._shares = [w / total for w in self.weights]
        self.drawn = [0] * len(self.streams)  # items each source has given: the whole mixing state
        self._last: Counter = Counter()  # items per source in the last batch (batch_metrics)
        self.items: list[T] = [x for s in self.streams for x in s.items]  # len() = one epoch (see above)

    def __len__(self) -> int:
        return len(self.items)

    def _pick(self) -> int:
        """The source of the next item (Tijdeman's rule; the lowest index on a tie)."""
        k = len(self.streams)
        if k == 1:
            return 0
        n, s = sum(self.drawn) + 1, 1.0 / (2 * k - 2)
        # sum of the deficits is 1 >= k s, so some source is eligible; the 1e-9 absorbs float rounding
        eligible = [i for i in range(k) if n * self._shares[i] - self.drawn[i] >= s - 1e-9]
        return min(eligible, key=lambda i: ((1.0 - s + self.drawn[i]) / self._shares[i], i))

    def next_batch(self, n: int) -> list[T]:
        picks = []
        for _ in range(n):
            i = self._pick()
            self.drawn[i] += 1
            picks.append(i)
        self._last = Counter(picks)
        # a source's next_batch(c) is its next c items, so this equals drawing the items one at a time
        drawn = {i: iter(self.streams[i].next_batch(c)) for i, c in self._last.items()}
        return [next(drawn[i]) for i in picks]

    def batch_metrics(self) -> dict[str, float]:
        """data/<stream>/<source>_frac: each source's share of the last batch."""
        total = sum(self._last.values()) or 1
        return {f"data/{self.name}/{label}_frac": self._last[i] / total for i, label in enumerate(self.labels)}

    def state_dict(self) -> dict:
        return {"name": self.name, "drawn": list(self.drawn),
                "sources": [{"label": lb, "weight": w, "stream": s.state_dict()}
                            for lb, w, s in zip(self.labels, self.weights, self.streams)]}

    def load_state_dict(self, state: dict) -> None:
        """Refuses (one DataError line) a checkpoint of another mixture: other sources, weights or row counts."""
        if "sources" not in state:
            raise DataError(f"{self.name}: the checkpoint's stream reads one source, this run mixes "
                            f"{len(self.streams)} (data.*.mixture)")
        saved = [(src["label"], src["weight"]) for src in state["sources"]]
        if saved != list(zip(self.labels, self.weights)):
            raise DataError(f"{self.name}: the checkpoint's mixture is {_weights(saved)}, this run's is "
                            f"{_weights(zip(self.labels, self.weights))}")
        for stream, src in zip(self.streams, state["sources"]):
            stream.load_state_dict(src["stream"])
        self.drawn = [int(c) for c in state["drawn"]]
        self._last = Counter()
