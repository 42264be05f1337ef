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
                 sampling: Sampling | None = None, slots: Sequence[int] | None = None) -> list[Rollout]:
        """K = `samples` responses per prompt, grouped by prompt, with sampling log-probs. Prompt i is
        the step's prompt slot `slots[i]` (default i): its seed is (run seed, step, slot) and its
        rollouts' `group` is the slot, so what is sampled does not depend on which engine samples it.
        `sampling` overrides the rollout settings (evaluation)."""
        ...

    def push_weights(self, buckets: Iterable[list[tuple[str, torch.Tensor]]], version: int) -> None:
        """Replace the engine's weights in place with HF-named tensors (the full state, in buckets;
        a bucket's tensors may be released once the next bucket is requested)."""
        ...

    def sleep(self) -> None:
        """Release memory until the next push (vLLM sleep mode on CUDA); a no-op where unsupported."""
        ...

    def close(self) -> None: ...
