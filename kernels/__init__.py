"""chord_kernels: the fused CHORD loss from hidden states, without [tokens, vocab] logits.

    out = chord_loss(x, weight, targets, kind, old_logp, advantages, mu=0.1, n_rollout=..., n_expert=...)
    out.loss.backward()            # gradients for x, weight (and bias)
    logp, entropy = token_logprobs(x, weight, targets)   # no grad: old/ref log-probs, evaluation

impl: "naive" (full fp32 logits, autograd; the reference), "chunked" (torch, token chunks; the CPU
default), "triton" (fused row kernels; CUDA, or the interpreter on CPU), "auto" (triton on CUDA
tensors, chunked otherwise). Imports no Triton unless impl resolves to "triton".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord_kernels._math import EXPERT, IGNORED, ROLLOUT, Scalars
from chord_kernels.chunked import TORCH_ROWS, ChordLossFunction, RowOps, raw_logits
from chord_kernels.reference import chord_loss_reference, logits_reference

__all__ = ["ChordLossOutput", "chord_loss", "token_logprobs", "IGNORED", "ROLLOUT", "EXPERT", "IMPLS"]
IMPLS = ("auto", "naive", "chunked", "triton")


@dataclass
class ChordLossOutput:
    loss: torch.Tensor  # 0-dim fp32, differentiable w.r.t. x, weight, bias
    logp: torch.Tensor  # [N] fp32, detached
    entropy: torch.Tensor  # [N] fp32, detached


def _resolve(impl: str, x: torch.Tensor) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if x.is_cuda else "chunked"
    return impl


def _rows(impl: str) -> RowOps:
    if impl == "triton":  # the only place Triton gets imported
        from chord_kernels.triton_chord import TRITON_ROWS

        return TRITON_ROWS
    return TORCH_ROWS


def chord_loss(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, kind: torch.Tensor,
               old_logp: torch.Tensor, advantages: torch.Tensor, ref_logp: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, *, mu: float, phi_mode: str = "phi", eps_low: float = 0.2,
               eps_high: float = 0.2, dual_clip: float | None = None, kl_coef: float = 0.0,
               entropy_coef: float = 0.0, temperature: float = 1.0, n_rollout: float, n_expert: float,
               impl: str = "auto", chunk_size: int = 1024) -> ChordLossOutput:
    """CHORD loss (docs/algorithm.md#objective) of N tokens with *global* denominators n_rollout/n_expert.

    kind: 0 ignored, 1 rollout (PPO clip vs old_logp with advantages), 2 expert (SFT, weight by phi_mode).
    """
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError("kl_coef != 0 needs ref_logp")
    s = Scalars(float(mu), phi_mode, eps_low, eps_high, dual_clip, kl_coef, entropy_coef, temperature,
                float(n_rollout), float(n_expert))
    impl = _resolve(impl, x)
    if impl == "naive":
        loss, logp, ent = chord_loss_reference(x, weight, targets, kind, old_logp, advantages, ref_logp, bias, s)
        return ChordLossOutput(loss, logp.detach(), ent.detach())
    loss, logp, ent = ChordLossFunction.apply(x, weight, bias, targets, kind, old_logp, advantages, ref_logp, s,
                                              chunk_size, _rows(impl))
    return ChordLossOutput(loss, logp, ent)


@torch.no_grad()
def token_logprobs(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
                   *, temperature: float = 1.0, impl: str = "auto", chunk_size: int = 1024
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (log-prob, entropy) in fp32, no gradient; never more than chunk x V logits."""
    impl = _resolve(impl, x)
    if impl == "naive":  # full [N, V] fp32 log-softmax: the readable reference
        logprobs = torch.log_softmax(logits_reference(x, weight, bias, temperature), dim=-1)
        return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(logprobs.exp() * logprobs).sum(-1)
    rows = _rows(impl)
    n = x.shape[0]
    logp = torch.empty(n, dtype=torch.float32, device=x.device)
    ent = torch.empty_like(logp)
    step = max(chunk_size, 1)
    for i in range(0, n, step):
        sl = slice(i, min(n, i + step))
        _, logp[sl], ent[sl] = rows.stats(raw_logits(x[sl], weight), targets[sl], bias, 1.0 / temperature)
    return logp, ent
