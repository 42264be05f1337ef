"""chord_kernels: the CHORD loss from hidden states, at three speeds, with one definition of the loss.

    out = chord_loss(x, weight, ScoredTokens(targets, kind, old_logp, advantages), LossSettings(),
                     mu=0.1, n_rollout=..., n_expert=...)
    out.loss.backward()            # gradients for x, weight (and bias); out.metrics: the step's metric contributions
    logp, entropy = token_logprobs(x, weight, targets)   # no grad: old/ref log-probs, evaluation

The objective and its metrics are `chord.algo.chord_loss`, and only there; what differs here is how
the vocabulary is swept (docs/kernels.md):
  impl "torch":   full [N, V] fp32 logits, autograd (the readable path; memory grows with N x V);
  impl "chunked": token chunks of fp32 logits, the loss differentiated per chunk by autograd on its
                  O(chunk) log-probs/entropies, dz/dX/dW by hand; never a full [N, V] tensor (CPU default);
  impl "triton":  the chunked schedule with fused Triton row kernels (CUDA, or the interpreter on CPU);
  impl "auto":    triton on CUDA tensors, chunked otherwise.
Imports no Triton unless impl resolves to "triton".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.algo.chord_loss import LossSettings
from chord.algo.chord_loss import chord_loss as objective
from chord.types import EXPERT, IGNORED, ROLLOUT, ScoredTokens
from chord_kernels.chunked import TORCH_ROWS, ChordLossFunction, RowOps, raw_logits
from chord_kernels.full import token_logp_entropy

__all__ = ["ChordLossOutput", "LossSettings", "ScoredTokens", "chord_loss", "token_logprobs", "IGNORED", "ROLLOUT",
           "EXPERT", "IMPLS"]
IMPLS = ("auto", "torch", "chunked", "triton")


@dataclass
class ChordLossOutput:
    loss: torch.Tensor  # 0-dim fp32, differentiable w.r.t. x, weight, bias
    metrics: dict[str, torch.Tensor]  # chord.algo.chord_loss's metric contributions for these tokens
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


def chord_loss(x: torch.Tensor, weight: torch.Tensor, tokens: ScoredTokens, settings: LossSettings, *, mu: float,
               n_rollout: float, n_expert: float, bias: torch.Tensor | None = None, temperature: float = 1.0,
               impl: str = "auto", chunk_size: int = 1024) -> ChordLossOutput:
    """CHORD loss (docs/algorithm.md#objective) of N scored tokens (hidden states x [N, H]) with the step's
    *global* token counts."""
    if settings.kl_coef != 0.0 and tokens.ref_logp is None:
        raise ValueError("kl_coef != 0 needs tokens.ref_logp")
    impl = _resolve(impl, x)
    if impl == "torch":
        logp, ent = token_logp_entropy(x, weight, bias, tokens.targets, temperature=temperature,
                                       entropy_grad=settings.entropy_coef != 0.0)
        loss, metrics = objective(logp, ent, tokens.kind, tokens.old_logp, tokens.advantages, mu=mu, settings=settings,
                                  n_rollout=n_rollout, n_expert=n_expert, ref_logp=tokens.ref_logp,
                                  scale=tokens.scale)
        return ChordLossOutput(loss, metrics, logp.detach(), ent.detach())
    metrics: dict[str, torch.Tensor] = {}
    loss, logp, ent = ChordLossFunction.apply(x, weight, bias, tokens, settings, float(mu), float(n_rollout),
                                              float(n_expert), float(temperature), max(1, chunk_size), _rows(impl),
                                              metrics)
    return ChordLossOutput(loss, metrics, logp, ent)


@torch.no_grad()
def token_logprobs(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
                   *, temperature: float = 1.0, impl: str = "auto", chunk_size: int = 1024
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (log-prob, entropy) in fp32, no gradient; never more than chunk x V logits (but "torch")."""
    impl = _resolve(impl, x)
    if impl == "torch":
        return token_logp_entropy(x, weight, bias, targets, temperature=temperature)
    rows = _rows(impl)
    n = x.shape[0]
    logp = torch.empty(n, dtype=torch.float32, device=x.device)
    ent = torch.empty_like(logp)
    step = max(chunk_size, 1)
    for i in range(0, n, step):
        sl = slice(i, min(n, i + step))
        _, logp[sl], ent[sl] = rows.stats(raw_logits(x[sl], weight), targets[sl], bias, 1.0 / temperature)
    return logp, ent
