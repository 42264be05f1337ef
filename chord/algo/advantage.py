"""GRPO group-relative advantages (docs/algorithm.md#group-advantages)."""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")  # algorithm.scale_rewards


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: str = "group") -> torch.Tensor:
    """A = (R - mean_group(R)) / (s + eps), unbiased standard deviations; `scale` picks s:

    * group: the group's std (GRPO, the CHORD paper);
    * batch: the std of all B x K rewards of the step (TRL's scale_rewards="batch");
    * none: s = 1, A = R - mean_group(R) (Dr. GRPO, arXiv 2503.20783: a group's std weights easy and hard
      prompts unequally).

    rewards: [B, K], one row per prompt, K samples each. A group of one (K = 1) has no spread to compare
    against, so it uses mean 0 and std 1 (docs/algorithm.md#group-advantages), i.e. A = R / (1 + eps).
    Returns [B, K] float32.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, samples], got shape {tuple(rewards.shape)}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    r = rewards.float()
    mean = r.mean(dim=1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])  # [B, 1]
    if scale == "group":
        std = r.std(dim=1, keepdim=True, unbiased=True) if r.shape[1] > 1 else torch.ones_like(mean)
    elif scale == "batch":
        std = r.flatten().std(unbiased=True).expand_as(mean) if r.numel() > 1 else torch.ones_like(mean)
    else:
        return r - mean
    return (r - mean) / (std + eps)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """[B] bool: the prompt groups whose K rewards are not all equal. The others have every advantage 0 and give
    GRPO no signal; DAPO's dynamic sampling (arXiv 2503.14476, algorithm.filter_groups) drops them."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, samples], got shape {tuple(rewards.shape)}")
    return rewards.amax(dim=1) != rewards.amin(dim=1)
