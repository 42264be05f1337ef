"""Per-token PPO-clip policy loss, optional dual clip and k3 KL (docs/algorithm.md#grpo-term)."""

from __future__ import annotations

import torch

RATIO_LOG_CLAMP = 20.0  # r = exp(clamp(logp - old_logp, -20, 20)): keeps exp finite for wild gaps


def ppo_clip_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """l_t = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high)); with dual clip, min(l_t, -A c) where A < 0.

    All inputs are per-token [T] float32. Returns (l_t, clipped, ratio): `clipped` marks tokens whose
    loss was taken from a clipped branch (zero gradient), ratio is detached.
    """
    ratio = torch.exp(torch.clamp(logp - old_logp, -RATIO_LOG_CLAMP, RATIO_LOG_CLAMP))  # [T]
    unclipped = -advantages * ratio
    clipped_loss = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped_loss)
    clipped = clipped_loss > unclipped  # ties carry the same gradient: count them as unclipped
    if dual_clip is not None:
        cap = -advantages * dual_clip
        dual = (advantages < 0) & (loss > cap)
        loss = torch.where(dual, cap, loss)
        clipped = clipped | dual
    return loss, clipped.detach(), ratio.detach()


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || ref) per token: exp(ref - logp) - (ref - logp) - 1 >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0
