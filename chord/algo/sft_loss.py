"""Per-token SFT loss on expert tokens with CHORD's weights (docs/algorithm.md#sft-term)."""

from __future__ import annotations

import torch

SFT_WEIGHTS = ("none", "phi", "is")


def sft_token_weights(logp: torch.Tensor, mode: str) -> torch.Tensor:
    """Detached per-token weight w_t.

    none: 1; phi: p (1 - p), which peaks at p = 0.5 and vanishes for tokens the model already knows
    (p -> 1) and for tokens far from its habits (p -> 0); is: p (the paper's rejected baseline).
    1 - p is computed as -expm1(logp): exact when p is close to 1.
    """
    lp = logp.detach()
    if mode == "none":
        return torch.ones_like(lp)
    if mode == "phi":
        return torch.exp(lp) * -torch.expm1(lp)
    if mode == "is":
        return torch.exp(lp)
    raise ValueError(f"unknown SFT weight mode {mode!r}; expected one of {SFT_WEIGHTS}")


def sft_token_loss(logp: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(-w_t * logp_t, w_t) per expert token; gradient flows through logp only, never through w."""
    w = sft_token_weights(logp, mode)
    return -w * logp, w
