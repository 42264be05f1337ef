"""Per-token SFT loss on expert tokens with CHORD's weights (docs/algorithm.md#sft-term)."""

from __future__ import annotations

import math

import torch

SFT_WEIGHTS = ("none", "phi", "is", "one_minus_p", "power")


def sft_token_weights(logp: torch.Tensor, sft_weight: str, *, exponents: tuple[float, float] = (1.0, 1.0),
                      cutoff_prob: float | None = None) -> torch.Tensor:
    """Detached per-token weight w_t.

    none: 1; phi: p (1 - p), which peaks at p = 0.5 and vanishes for tokens the model already knows
    (p -> 1) and for tokens far from its habits (p -> 0); is: p (the paper's rejected baseline);
    one_minus_p: 1 - p, largest for the tokens the model finds least likely (the CHORD authors' advice for base
    models, Trinity-RFT issue #425); power: p^a (1 - p)^b with (a, b) = `exponents` (phi is (1, 1), is (1, 0),
    one_minus_p (0, 1)). 1 - p is computed as -expm1(logp): exact when p is close to 1.
    cutoff_prob: tokens with p > cutoff_prob get weight 0 (no loss, no gradient): the ones the model already
    knows. Trinity-RFT's sft_phi loss clamps log p at log(cutoff) instead, which gives the same gradient.
    """
    lp = logp.detach()
    if sft_weight == "none":
        w = torch.ones_like(lp)
    elif sft_weight == "phi":
        w = torch.exp(lp) * -torch.expm1(lp)
    elif sft_weight == "is":
        w = torch.exp(lp)
    elif sft_weight == "one_minus_p":
        w = -torch.expm1(lp)
    elif sft_weight == "power":
        a, b = exponents
        # exp(a log p) stays finite at p = 0 for a >= 0 (validated), where p ** a of a rounded p would not matter
        w = torch.exp(a * lp) * (-torch.expm1(lp)) ** b
    else:
        raise ValueError(f"unknown SFT weight {sft_weight!r}; expected one of {SFT_WEIGHTS}")
    if cutoff_prob is not None:
        w = torch.where(lp > math.log(cutoff_prob), torch.zeros_like(w), w)
    return w


def sft_token_loss(logp: torch.Tensor, sft_weight: str, *, exponents: tuple[float, float] = (1.0, 1.0),
                   cutoff_prob: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(-w_t * logp_t, w_t) per expert token; gradient flows through logp only, never through w."""
    w = sft_token_weights(logp, sft_weight, exponents=exponents, cutoff_prob=cutoff_prob)
    return -w * logp, w
