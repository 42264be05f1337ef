"""Typed records that cross the rollout-worker / learner boundary (STYLE.md item 4)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    index: int  # row index in the prompt dataset (for logging and exact resume)


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


@dataclass
class TokenBatch:
    """A packed learner batch (rollout and expert rows together), right-padded.

    kind: 0 = ignored (prompt/pad), 1 = rollout response token, 2 = expert response token.
    All per-token tensors are aligned to *targets*: position t predicts input_ids[t + 1].
    """

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] long
    targets: torch.Tensor  # [B, L-1] long
    kind: torch.Tensor  # [B, L-1] long
    old_logp: torch.Tensor  # [B, L-1] float32
    advantages: torch.Tensor  # [B, L-1] float32
