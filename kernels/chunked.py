"""chunked: the CHORD loss over token chunks; never a full [N, V] tensor (the CPU default).

Schedule ("chunk of materialised logits", KERNEL_NOTES.md): per chunk of C tokens, one GEMM into a
[C, V] fp32 buffer, a row pass (logsumexp, target log-prob, entropy), O(C) per-token loss terms and
their gradients g = dL/dlogp, h = dL/dH, a second row pass that turns the buffer into
dz = g (onehot - p) - h p (z - sum_j p_j z_j) in place, then the dX and dW GEMMs. Every per-token
weight is known before the sweep, so gradients are produced in the forward call: legal because
the whole loss, normalisation included, lives inside this op. Memory: C x V fp32 workspace plus an
fp32 dW accumulator, flat in N.

The row passes are plain torch here; chord_kernels.triton_chord swaps in fused Triton row kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from chord_kernels._math import Scalars, token_terms


def torch_row_stats(z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z [C, V] fp32 scaled logits -> (lse, logp, entropy) per row; one [C, V] temporary at a time."""
    lse = torch.logsumexp(z, dim=-1)
    logp = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    # H = -sum p log p; entr is elementwise and exact at p = 0 and p = 1 (|z| ~ 1e4 stays finite)
    entropy = torch.special.entr(torch.softmax(z, dim=-1)).sum(-1)
    return lse, logp, entropy


def torch_row_grad_(z: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                    g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """In place: z [C, V] -> dL/dz = g (onehot - p) - h p (z - E[z]), with z - E[z] = log p + H."""
    z.sub_(lse.unsqueeze(-1))  # log-softmax
    p = torch.exp(z)
    if h.is_cuda or bool(h.any()):  # no entropy term (the default): skip its [C, V] work on CPU
        z.add_(entropy.unsqueeze(-1)).mul_(p).mul_(-h.unsqueeze(-1))
    else:
        z.zero_()
    z.addcmul_(p, g.unsqueeze(-1), value=-1.0)
    z.scatter_add_(-1, targets.unsqueeze(-1), g.unsqueeze(-1))
    return z


RowStats = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
RowGrad = Callable[..., torch.Tensor]


def chunk_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """[C, V] fp32 logits / T. fp32 accumulation even for bf16 inputs (bf16-rounded logits cost
    up to ~0.06 nats of log-prob error)."""
    if x.is_cuda and x.dtype == torch.bfloat16:
        z = torch.mm(x, weight.t(), out_dtype=torch.float32)
    else:
        z = x.float() @ weight.float().t()
    if bias is not None:
        z += bias.float()
    if temperature != 1.0:
        z /= temperature
    return z


def chord_forward_backward(x, weight, bias, targets, kind, old_logp, advantages, ref_logp, s: Scalars,
                           chunk_size: int, need_grad: bool, row_stats: RowStats = torch_row_stats,
                           row_grad: RowGrad = torch_row_grad_):
    """Loss, per-token logp/entropy, and (if need_grad) dx, dW, db, all in one sweep over chunks."""
    n = x.shape[0]
    loss = torch.zeros((), dtype=torch.float32, device=x.device)
    logp = torch.empty(n, dtype=torch.float32, device=x.device)
    entropy = torch.empty(n, dtype=torch.float32, device=x.device)
    dx = torch.empty_like(x) if need_grad else None
    dw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device) if need_grad else None
    db = torch.zeros(weight.shape[0], dtype=torch.float32, device=x.device) if need_grad and bias is not None else None
    for i in range(0, n, chunk_size):
        sl = slice(i, min(n, i + chunk_size))
        z = chunk_logits(x[sl], weight, bias, s.temperature)  # [C, V] fp32 workspace
        lse, lp, ent = row_stats(z, targets[sl])
        logp[sl], entropy[sl] = lp, ent
        ref = None if ref_logp is None else ref_logp[sl].float()
        part, g, h = token_terms(lp, ent, kind[sl], old_logp[sl].float(), advantages[sl].float(), ref, s)
        loss += part
        if need_grad:
            dz = row_grad(z, targets[sl], lse, ent, g, h)  # in place: [C, V] = dL/dz
            inv_t = 1.0 / s.temperature
            dx[sl] = (dz @ weight.float()).mul_(inv_t).to(x.dtype)
            dw.addmm_(dz.t(), x[sl].float(), alpha=inv_t)  # fp32 accumulation across chunks
            if db is not None:
                db.add_(dz.sum(0), alpha=inv_t)
    return loss, logp, entropy, dx, dw, db


class ChordLossFunction(torch.autograd.Function):
    """Gradients are computed in forward; backward scales them by the incoming scalar gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, kind, old_logp, advantages, ref_logp, s, chunk_size, row_stats, row_grad):
        loss, logp, entropy, dx, dw, db = chord_forward_backward(
            x, weight, bias, targets, kind, old_logp, advantages, ref_logp, s, chunk_size,
            need_grad=True, row_stats=row_stats, row_grad=row_grad)
        ctx.save_for_backward(dx, dw.to(weight.dtype), None if db is None else db.to(bias.dtype))
        ctx.mark_non_differentiable(logp, entropy)
        return loss, logp, entropy

    @staticmethod
    def backward(ctx, grad_loss, _glogp, _gent):
        dx, dw, db = ctx.saved_tensors  # used once: scale in place rather than holding two copies
        out_db = None if db is None else db.mul_(grad_loss)
        return dx.mul_(grad_loss), dw.mul_(grad_loss), out_db, None, None, None, None, None, None, None, None, None
