"""naive: the readable reference. Full [N, V] fp32 logits, autograd for every gradient.

Matches docs/algorithm.md#objective exactly; the chunked and Triton paths are tested against it
(computed in float64 for the gold values).
"""

from __future__ import annotations

import torch

from chord_kernels._math import EXPERT, RATIO_LOG_CLAMP, ROLLOUT, Scalars


def logits_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, temperature: float,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    z = x.to(dtype) @ weight.to(dtype).t()
    if bias is not None:
        z = z + bias.to(dtype)
    return z / temperature


def chord_loss_reference(x, weight, targets, kind, old_logp, advantages, ref_logp, bias, s: Scalars,
                         dtype: torch.dtype = torch.float32):
    """(loss, logp [N], entropy [N]); differentiable w.r.t. x, weight, bias through autograd."""
    logprobs = torch.log_softmax(logits_reference(x, weight, bias, s.temperature, dtype), dim=-1)  # [N, V]
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    roll, exp_ = kind == ROLLOUT, kind == EXPERT
    zero = torch.zeros_like(logp)
    old, adv = old_logp.to(dtype), advantages.to(dtype)
    ratio = torch.exp(torch.clamp(logp - old, -RATIO_LOG_CLAMP, RATIO_LOG_CLAMP))
    pg = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - s.eps_low, 1 + s.eps_high))
    if s.dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * s.dual_clip), pg)
    rl = pg
    if s.kl_coef != 0.0:
        d = ref_logp.to(dtype) - logp
        rl = rl + s.kl_coef * (torch.exp(d) - d - 1)
    rl = rl - s.entropy_coef * entropy
    p = logp.detach().exp()
    w = {"none": torch.ones_like(p), "phi": p * -torch.expm1(logp.detach()), "is": p}[s.phi_mode]
    loss = (1 - s.mu) * torch.where(roll, rl, zero).sum() / max(s.n_rollout, 1.0) \
        + s.mu * torch.where(exp_, -w * logp, zero).sum() / max(s.n_expert, 1.0)
    return loss, logp, entropy
