"""GRPO group-relative advantages (docs/algorithm.md#group-advantages)."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A = (R - mean_group(R)) / (std_group(R) + eps) with the unbiased std.

    rewards: [B, K], one row per prompt, K samples each. A group of one (K = 1) has no spread
    to compare against, so it uses mean 0 and std 1 (docs/algorithm.md#group-advantages), i.e. A = R / (1 + eps).
    Returns [B, K] float32.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, samples], got shape {tuple(rewards.shape)}")
    r = rewards.float()
    if r.shape[1] == 1:
        mean, std = torch.zeros_like(r), torch.ones_like(r)
    else:
        mean = r.mean(dim=1, keepdim=True)  # [B, 1]
        std = r.std(dim=1, keepdim=True, unbiased=True)  # [B, 1]
    return (r - mean) / (std + eps)
