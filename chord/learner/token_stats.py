"""Per-token log-prob and entropy from hidden states (the `loss.impl=torch` path).

Logits are computed in fp32 even for a bf16 model: rounding them to bf16 before the logsumexp
costs up to ~0.06 nats of log-prob error (docs/kernels.md#precision), 6% of the PPO ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logp_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [T, H], weight [V, H], targets [T] -> (logp [T], entropy [T]), both fp32."""
    logits = F.linear(hidden.float(), weight.float(), None if bias is None else bias.float())  # [T, V]
    logits = logits / temperature
    logprobs = torch.log_softmax(logits, dim=-1)  # [T, V]
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [T]
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(logprobs.exp() * logprobs).sum(-1)  # [T]
    if not entropy_grad:
        entropy = entropy.detach()
    return logp, entropy

