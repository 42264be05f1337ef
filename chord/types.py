"""Typed records that cross the rollout-worker / learner boundary (docs/architecture.md#typed-boundary)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one generate call (training rollouts and evaluation differ)."""

    temperature: float
    top_p: float
    max_new_tokens: int


@dataclass
class PromptExample:
    """One RL prompt: chat-templated prompt token ids plus what the reward needs."""

    prompt_ids: list[int]
    prompt_text: str
    answer: str
    index: int  # row index in its source (for logging); unique per source
    # the row's other columns (JSON values): what a reward that accepts `extra_info` receives (chord.rewards)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the mixture source it came from (data.prompts.mixture); "" for a single source


@dataclass
class ExpertExample:
    """One expert demonstration: full sequence ids, loss_mask = 1 on response tokens only."""

    input_ids: list[int]
    loss_mask: list[int]
    index: int


@dataclass
class Rollout:
    """One sampled response from the rollout engine, with its sampling log-probs."""

    prompt_ids: list[int]
    response_ids: list[int]
    sampling_logprobs: list[float]  # log-prob of each response token under the sampling policy
    response_text: str
    truncated: bool  # stopped by max_tokens rather than EOS
    group: int  # index of the prompt within the step: rows of one group share a baseline
    policy_version: int  # optimizer steps applied to the weights that sampled it
    reward: float = 0.0
    reward_info: dict[str, float] = field(default_factory=dict)


IGNORED, ROLLOUT, EXPERT = 0, 1, 2  # values of the per-token `kind` tensor (the only definition)


@dataclass(frozen=True)
class ScoredTokens:
    """The tokens whose log-probs enter the loss, flat [T] and aligned with their hidden states."""

    targets: torch.Tensor  # [T] long: the sampled token (rollout) or the expert token
    kind: torch.Tensor  # [T] long: IGNORED / ROLLOUT / EXPERT
    old_logp: torch.Tensor  # [T] float32: the rollout engine's sampling log-probs (0 elsewhere)
    advantages: torch.Tensor  # [T] float32: the row's group advantage (0 elsewhere)
    ref_logp: torch.Tensor | None = None  # [T] float32: frozen reference log-probs (KL term only)
    # [T] float32: the factor of each token's loss that sets its term's aggregation mode (None: 1, token-mean;
    # chord.batching.aggregation_scales)
    scale: torch.Tensor | None = None

    def __getitem__(self, sl: slice) -> ScoredTokens:
        return ScoredTokens(self.targets[sl], self.kind[sl], self.old_logp[sl], self.advantages[sl],
                            None if self.ref_logp is None else self.ref_logp[sl],
                            None if self.scale is None else self.scale[sl])


@dataclass
class LoopState:
    """What the training loop changes as it runs; a checkpoint persists step, nonfinite_streak and best."""

    step: int = 0  # the last finished step: where a resumed run starts
    nonfinite_streak: int = 0  # consecutive skipped (NaN/Inf) steps
    best: dict | None = None  # {"metric", "value", "step"} of best/
    engine_step: int = 0  # the step whose weights the rollout engine holds (same on every rank); not saved


@dataclass
class TokenBatch:
    """One learner micro-batch (rollout and expert rows together), right-padded or packed.

    Right-padded: [B, L] with an attention mask. Packed (padding-free): B = 1, the rows concatenated
    into one sequence, position ids restarting at 0 per row and `cu_seqlens` marking row boundaries
    (flash-attention's varlen layout); attention never crosses a boundary (chord.learner.varlen_attention).
    Per-token tensors are aligned to *positions*: position t predicts targets[t] = the next token of
    the same row; a row's last position predicts nothing (kind 0).
    kind: IGNORED (prompt/pad/row end), ROLLOUT (rollout response token), EXPERT (expert response token).
    scored: positions that go through the vocabulary: kind != 0, and position 0 of a micro-batch with
    no scored token (a rank's padding micro-batch) so every forward uses every parameter.
    """

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor | None  # [B, L] long (padded); None (packed)
    position_ids: torch.Tensor | None  # [B, L] long (packed); None (padded: 0..L-1)
    cu_seqlens: torch.Tensor | None  # [rows + 1] int32 (packed); None (padded)
    targets: torch.Tensor  # [B, L] long
    kind: torch.Tensor  # [B, L] long
    old_logp: torch.Tensor  # [B, L] float32
    advantages: torch.Tensor  # [B, L] float32
    scored: torch.Tensor  # [B, L] bool
    scale: torch.Tensor | None = None  # [B, L] float32: per-token loss factor of the aggregation mode (None: 1)

    @property
    def packed(self) -> bool:
        return self.cu_seqlens is not None

    def to(self, device: torch.device | str) -> TokenBatch:
        """Every tensor on `device` (the learner's accelerator): the one place a batch moves."""
        moved = {f.name: (v.to(device, non_blocking=True) if isinstance(v := getattr(self, f.name), torch.Tensor)
                          else v)
                 for f in fields(self)}
        return TokenBatch(**moved)
