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

from chord.algo.policy_loss import RATIO_LOG_CLAMP, k3_kl, ppo_clip_token_loss
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
    sft_exponents: tuple[float, float] = (1.0, 1.0)  # (a, b) of sft_weight "power": p^a (1 - p)^b
    sft_cutoff_prob: float | None = None  # expert tokens with p above it get SFT weight 0
    # truncated importance sampling (docs/algorithm.md#truncated-importance-sampling): None = off
    tis_cap: float | None = None


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
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CHORD loss of one micro-batch.

    Per-token inputs are flat [T] float32 (logp and entropy carry gradients; entropy only matters
    for the gradient when entropy_coef != 0). kind is 0 ignored / 1 rollout / 2 expert.
    n_rollout, n_expert: token counts of the whole step (denominators of the two token means).
    scale: per-token factor of each term's token loss (None = 1), set by chord.batching.aggregation_scales so that
    sum(scale * l) / n_tokens is the term's aggregation mode (docs/algorithm.md#loss-aggregation); metrics stay
    token means.
    """
    roll = kind == ROLLOUT  # [T]
    expert = kind == EXPERT  # [T]
    n_r = float(max(n_rollout, 1))
    n_e = float(max(n_expert, 1))
    zero = logp.new_zeros(())

    # L_GRPO: PPO clip against the sampling log-probs (the rollout engine is the "old" policy). With TIS the
    # learner's own log-probs are the old policy (one optimizer step per batch: they are the current ones, so
    # the ratio is 1) and the engine/learner mismatch is corrected by w = min(p_learner / p_engine, cap), detached.
    tis = None if settings.tis_cap is None else torch.exp(
        torch.clamp(logp.detach() - old_logp, max=RATIO_LOG_CLAMP))  # p_learner / p_engine
    pg, clipped, ratio = ppo_clip_token_loss(
        logp, old_logp if tis is None else logp.detach(), advantages,
        eps_low=settings.eps_low, eps_high=settings.eps_high, dual_clip=settings.dual_clip,
    )
    if tis is not None:
        pg = pg * torch.clamp(tis, max=settings.tis_cap)
    rl_tok = pg
    kl = None
    if settings.kl_coef != 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef != 0 needs reference log-probs")
        kl = k3_kl(logp, ref_logp)
        rl_tok = rl_tok + settings.kl_coef * kl
    if settings.entropy_coef != 0.0:
        rl_tok = rl_tok - settings.entropy_coef * entropy
    grpo = torch.where(roll, rl_tok if scale is None else scale * rl_tok, zero).sum() / n_r

    # L_SFT: -w_t logp_t on expert response tokens, w detached (phi = p(1-p) for CHORD-phi).
    sft_tok, w = sft_token_loss(logp, settings.sft_weight, exponents=settings.sft_exponents,
                                cutoff_prob=settings.sft_cutoff_prob)
    sft = torch.where(expert, sft_tok if scale is None else scale * sft_tok, zero).sum() / n_e

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
        if tis is not None:  # the weight applied, and how often the cap bit
            applied = torch.clamp(tis, max=settings.tis_cap)
            metrics["policy/tis_weight_mean"] = torch.where(roll, applied, zero).sum() / n_r
            metrics["policy/tis_capped_frac"] = (roll & (tis > settings.tis_cap)).sum() / n_r
        if kl is not None:
            metrics["kl/ref"] = torch.where(roll, kl, zero).sum() / n_r
    return loss, metrics
