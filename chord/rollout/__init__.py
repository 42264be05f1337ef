"""Rollout side: the engine that samples on-policy responses and receives new weights.

Only modules under chord.rollout import vLLM, and only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from chord.types import PromptExample, Rollout, Sampling


class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[PromptExample], samples: int, step: int,
                 sampling: Sampling | None = None) -> list[Rollout]:
        """K = `samples` responses per prompt, grouped by prompt, with sampling log-probs; seeded by
        (run seed, step, prompt slot); `sampling` overrides the rollout settings (evaluation)."""
        ...

    def push_weights(self, named: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        """Replace the engine's weights in place with HF-named tensors (full state)."""
        ...

    def close(self) -> None: ...
