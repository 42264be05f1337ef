"""Test oracle: the CHORD loss's per-token gradients derived by hand (docs/kernels.md#gradient-maths).

The kernels differentiate `chord.algo.chord_loss` by autograd; this second, independent derivation
of g = dL/dlogp and h = dL/dH checks that (tests/kernels/test_chord_loss.py). Not used by chord.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.algo.policy_loss import RATIO_LOG_CLAMP
from chord.types import EXPERT, ROLLOUT


@dataclass(frozen=True)
class Scalars:
    mu: float
    sft_weight: str  # none | phi | is | one_minus_p | power
    eps_low: float
    eps_high: float
    dual_clip: float | None
    kl_coef: float
    entropy_coef: float
    temperature: float
    n_rollout: float
    n_expert: float
    sft_exponents: tuple[float, float] = (1.0, 1.0)  # power: p^a (1 - p)^b
    sft_cutoff_prob: float | None = None
    tis_cap: float | None = None


def token_terms(logp: torch.Tensor, entropy: torch.Tensor, kind: torch.Tensor, old_logp: torch.Tensor,
                adv: torch.Tensor, ref_logp: torch.Tensor | None, s: Scalars, scale: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss contribution of these tokens, g = dL/dlogp [C], h = dL/dH [C]), all fp32, no autograd.

    L = (1-mu)/N_r * sum_rollout(pg + kl_coef*k3 - ent_coef*H) + mu/N_e * sum_expert(-w*logp).
    """
    roll = kind == ROLLOUT
    exp_ = kind == EXPERT
    n_r, n_e = max(s.n_rollout, 1.0), max(s.n_expert, 1.0)
    c_r, c_e = (1.0 - s.mu) / n_r, s.mu / n_e
    zero = torch.zeros_like(logp)

    tis = None
    if s.tis_cap is not None:  # the learner's own policy is the old one (ratio 1); w = min(p / p_engine, cap)
        tis = torch.clamp(torch.exp(torch.clamp(logp - old_logp, max=RATIO_LOG_CLAMP)), max=s.tis_cap)
        old_logp = logp
    ratio = torch.exp(torch.clamp(logp - old_logp, -RATIO_LOG_CLAMP, RATIO_LOG_CLAMP))
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - s.eps_low, 1.0 + s.eps_high)
    pg = torch.maximum(unclipped, clipped)
    # gradient flows only where the unclipped branch is taken (ties carry the same gradient)
    # and the log-ratio clamp is not active
    live = (clipped <= unclipped) & ((logp - old_logp).abs() <= RATIO_LOG_CLAMP)
    if s.dual_clip is not None:
        cap = -adv * s.dual_clip
        dual = (adv < 0) & (pg > cap)
        pg = torch.where(dual, cap, pg)
        live = live & ~dual
    g_roll = torch.where(live, -adv * ratio, zero)
    if tis is not None:
        pg, g_roll = pg * tis, g_roll * tis
    rl = pg
    if s.kl_coef != 0.0:
        assert ref_logp is not None, "kl_coef != 0 needs ref_logp"
        d = ref_logp - logp
        rl = rl + s.kl_coef * (torch.exp(d) - d - 1.0)
        g_roll = g_roll + s.kl_coef * (1.0 - torch.exp(d))
    if s.entropy_coef != 0.0:
        rl = rl - s.entropy_coef * entropy

    if s.sft_weight == "none":
        w = torch.ones_like(logp)
    elif s.sft_weight == "phi":
        w = torch.exp(logp) * -torch.expm1(logp)  # p (1 - p), 1 - p exact near p = 1
    elif s.sft_weight == "is":
        w = torch.exp(logp)
    elif s.sft_weight == "one_minus_p":
        w = -torch.expm1(logp)
    elif s.sft_weight == "power":
        w = torch.exp(logp) ** s.sft_exponents[0] * (-torch.expm1(logp)) ** s.sft_exponents[1]
    else:
        raise ValueError(f"sft_weight must be none|phi|is|one_minus_p|power, got {s.sft_weight!r}")
    if s.sft_cutoff_prob is not None:
        w = torch.where(torch.exp(logp) > s.sft_cutoff_prob, zero, w)
    if scale is not None:  # each token's aggregation factor multiplies its whole loss, so its gradients too
        c_r, c_e = c_r * scale, c_e * scale

    loss = (c_r * torch.where(roll, rl, zero)).sum() + (c_e * torch.where(exp_, -w * logp, zero)).sum()
    g = torch.where(roll, c_r * g_roll, zero) + torch.where(exp_, -c_e * w, zero)
    h = torch.where(roll, -c_r * s.entropy_coef * torch.ones_like(logp), zero)
    return loss, g, h
