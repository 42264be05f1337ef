"""The one place RL and SFT meet: L = (1 - mu) L_GRPO + mu L_SFT (docs/algorithm.md#objective).

Each term is a token mean over *its own* tokens across the whole step (all micro-batches and
ranks): the caller passes the global counts n_rollout and n_expert as denominators, so summing
this loss over micro-batches and ranks gives the full-batch loss and gradient exactly, and a
micro-batch without expert (or rollout) tokens contributes exactly 0, never NaN.

Metrics are returned as *contributions*: plain keys sum over micro-batches and ranks to the
step value, `max:`/`min:` keys reduce with max/min (see chord.step_metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.algo.policy_loss import k3_kl, ppo_clip_token_loss
from chord.algo.sft_loss import sft_token_loss
from chord.types import EXPERT, ROLLOUT


@dataclass(frozen=True)
class LossSettings:
    """Static loss hyper-parameters, fixed for a run (defaults: docs/algorithm.md#grpo-term)."""

    sft_weight: str = "phi"  # none | phi | is
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None  # c of the dual clip for A < 0 (3.0 in the literature)
    kl_coef: float = 0.0
    entropy_coef: float = 0.0


def _masked_extreme(values: torch.Tensor, mask: torch.Tensor, largest: bool) -> torch.Tensor:
    fill = float("-inf") if largest else float("inf")
    v = torch.where(mask, values, torch.full_like(values, fill))
    return v.max() if largest else v.min()


def chord_loss(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    kind: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    mu: float,
    settings: LossSettings,
    n_rollout: int,
    n_expert: int,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CHORD loss of one micro-batch.

    Per-token inputs are flat [T] float32 (logp and entropy carry gradients; entropy only matters
    for the gradient when entropy_coef != 0). kind is 0 ignored / 1 rollout / 2 expert.
    n_rollout, n_expert: token counts of the whole step (denominators of the two token means).
    """
    roll = kind == ROLLOUT  # [T]
    expert = kind == EXPERT  # [T]
    n_r = float(max(n_rollout, 1))
    n_e = float(max(n_expert, 1))
    zero = logp.new_zeros(())

    # L_GRPO: PPO clip against the sampling log-probs (the rollout engine is the "old" policy).
    pg, clipped, ratio = ppo_clip_token_loss(
        logp, old_logp, advantages,
        eps_low=settings.eps_low, eps_high=settings.eps_high, dual_clip=settings.dual_clip,
    )
    rl_tok = pg
    kl = None
    if settings.kl_coef != 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef != 0 needs reference log-probs")
        kl = k3_kl(logp, ref_logp)
        rl_tok = rl_tok + settings.kl_coef * kl
    if settings.entropy_coef != 0.0:
        rl_tok = rl_tok - settings.entropy_coef * entropy
    grpo = torch.where(roll, rl_tok, zero).sum() / n_r

    # L_SFT: -w_t logp_t on expert response tokens, w detached (phi = p(1-p) for CHORD-phi).
    sft_tok, w = sft_token_loss(logp, settings.sft_weight)
    sft = torch.where(expert, sft_tok, zero).sum() / n_e

    loss = (1.0 - mu) * grpo + mu * sft

    with torch.no_grad():
        gap = (logp - old_logp).abs()
        metrics = {
            "loss/grpo": grpo.detach(),
            "loss/sft": sft.detach(),
            "loss/total": loss.detach(),
            "policy/clip_frac": (clipped & roll).sum() / n_r,
            "policy/ratio_mean": torch.where(roll, ratio, zero).sum() / n_r,
            "max:policy/ratio_max": _masked_extreme(ratio, roll, largest=True),
            "entropy/rollout": torch.where(roll, entropy.detach(), zero).sum() / n_r,
            "entropy/expert": torch.where(expert, entropy.detach(), zero).sum() / n_e,
            # the SFT token weight w_t of the run's mode (phi = p(1-p) for CHORD-phi, 1 for plain SFT)
            "sft/weight_mean": torch.where(expert, w, zero).sum() / n_e,
            "max:sft/weight_max": _masked_extreme(w, expert, largest=True),
            "min:sft/weight_min": _masked_extreme(w, expert, largest=False),
            "sft/expert_logp": torch.where(expert, logp.detach(), zero).sum() / n_e,
            # learner vs rollout engine before the update: the stale-weights tell (docs/algorithm.md#old-log-probs)
            "gap/logp_mean": torch.where(roll, gap, zero).sum() / n_r,
            "max:gap/logp_max": _masked_extreme(gap, roll, largest=True),
        }
        if kl is not None:
            metrics["kl/ref"] = torch.where(roll, kl, zero).sum() / n_r
    return loss, metrics
