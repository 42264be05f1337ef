"""Per-token SFT loss on expert tokens with CHORD's weights (docs/algorithm.md#sft-term)."""

from __future__ import annotations

import torch

SFT_WEIGHTS = ("none", "phi", "is")


def sft_token_weights(logp: torch.Tensor, sft_weight: str) -> torch.Tensor:
    """Detached per-token weight w_t.

    none: 1; phi: p (1 - p), which peaks at p = 0.5 and vanishes for tokens the model already knows
    (p -> 1) and for tokens far from its habits (p -> 0); is: p (the paper's rejected baseline).
    1 - p is computed as -expm1(logp): exact when p is close to 1.
    """
    lp = logp.detach()
    if sft_weight == "none":
        return torch.ones_like(lp)
    if sft_weight == "phi":
        return torch.exp(lp) * -torch.expm1(lp)
    if sft_weight == "is":
        return torch.exp(lp)
    raise ValueError(f"unknown SFT weight {sft_weight!r}; expected one of {SFT_WEIGHTS}")


def sft_token_loss(logp: torch.Tensor, sft_weight: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(-w_t * logp_t, w_t) per expert token; gradient flows through logp only, never through w."""
    w = sft_token_weights(logp, sft_weight)
    return -w * logp, w
