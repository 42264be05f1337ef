"""Learner side: the DeepSpeed engine. Only chord.learner.deepspeed_learner imports deepspeed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from chord.algo.chord_loss import LossSettings
from chord.config import ChordConfig
from chord.types import TokenBatch


class Learner(Protocol):
    """What the train loop, checkpoints and exports need of a learner (DeepSpeedLearner implements it)."""

    zero_stage: int
    n_parameters: int  # the policy's, whole (not this rank's ZeRO-3 shard)

    def train_step(self, micro: list[TokenBatch], mu: float, n_rollout: int, n_expert: int) -> dict[str, torch.Tensor]:
        """All of this rank's micro-batches (the same count on every rank), then one optimizer step;
        returns metric contributions (chord.step_metrics)."""
        ...

    def named_weights(self, copy: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """Full Hugging Face-named weights; collective (every rank iterates)."""
        ...

    def weight_buckets(self, limit_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """HF-named weights in buckets of <= limit_bytes (views valid until the next bucket); collective."""
        ...

    def save_checkpoint(self, path: str, tag: str, client_state: dict[str, Any]) -> None: ...

    def load_checkpoint(self, path: str, tag: str) -> None: ...

    def export(self, out_dir: Path, tokenizer: Any) -> None:
        """save_pretrained of the policy and tokenizer (collective; rank 0 writes)."""
        ...

    def forget_process_groups(self) -> None: ...


def loss_settings(cfg: ChordConfig) -> LossSettings:
    """The recipe's algorithm.* keys as the loss's settings."""
    a = cfg.algorithm
    return LossSettings(sft_weight=a.sft_weight, eps_low=a.clip_eps_low, eps_high=a.clip_eps_high,
                        dual_clip=a.dual_clip, kl_coef=a.kl_coef, entropy_coef=a.entropy_coef,
                        sft_exponents=(float(a.sft_weight_exponents[0]), float(a.sft_weight_exponents[1])),
                        sft_cutoff_prob=a.sft_cutoff_prob, tis_cap=a.tis_cap)
