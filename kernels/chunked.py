"""chunked: the CHORD loss over token chunks; never a full [N, V] tensor (the CPU default).

Schedule ("chunk of materialised logits", docs/kernels.md#two-schedules): per chunk of C tokens, one GEMM
into a [C, V] fp32 buffer, a row pass (logsumexp, target log-prob, entropy), then the objective itself,
`chord.algo.chord_loss`, on those C log-probs and entropies with autograd, which gives the loss, its
metrics and g = dL/dlogp, h = dL/dH (O(C) work: the objective is written once, in chord/algo), a
second row pass that turns the buffer into dz = g (onehot - p) - h p (z - sum_j p_j z_j), then the dX
and dW GEMMs. Every per-token weight is known before the sweep, so gradients are produced in the
forward call: legal because the whole loss, normalisation included, lives inside this op.
Memory, flat in N: the C x V fp32 buffer
(plus a C x V copy of dz in the input dtype for bf16/fp16 inputs) and the fp32 dW accumulator.

The row passes are plain torch here; chord_kernels.triton_chord swaps in fused Triton row kernels
(RowOps). Matches chord.algo.chord_loss on full logits (tests/kernels): fp32 inputs to ~1e-6 relative;
bf16/fp16 inputs: logits, log-probs, entropy and loss in fp32, dz rounded once to the input dtype
for the dX/dW GEMMs (as cuBLAS-speed schedules do), dW summed over chunks in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from chord.algo.chord_loss import LossSettings
from chord.algo.chord_loss import chord_loss as objective
from chord.step_metrics import merge
from chord.types import ScoredTokens

LOW_PRECISION = (torch.bfloat16, torch.float16)


def torch_row_stats(z: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
                    inv_t: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z [C, V] fp32 logits -> (lse, logp, entropy) of (z + bias) * inv_t per row.

    Applies bias/inv_t to z in place, so the row_grad that follows gets bias=None, inv_t=1.
    """
    _affine_(z, bias, inv_t)
    m = z.amax(-1, keepdim=True)  # [C, 1]
    p = torch.sub(z, m).exp_()  # the one [C, V] temporary: exp(z - max), then p in place
    s = p.sum(-1, keepdim=True)
    lse = (m + torch.log(s)).squeeze(-1)
    logp = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    # H = -sum p log p; entr is elementwise and exact at p = 0 and p = 1 (|z| ~ 1e4 stays finite)
    entropy = torch.special.entr(p.div_(s), out=p).sum(-1)
    return lse, logp, entropy


def torch_row_grad_(z: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                    g: torch.Tensor, h: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None = None,
                    inv_t: float = 1.0) -> torch.Tensor:
    """out [C, V] <- dL/dz = g (onehot - p) - h p (z - E[z]), with z - E[z] = log p + H (no cancellation).

    Destroys z (may be `out`). bias/inv_t must be those already applied by torch_row_stats: None, 1.
    """
    assert bias is None and inv_t == 1.0, "torch_row_stats already applied bias and temperature"
    z.sub_(lse.unsqueeze(-1))  # log-softmax
    if h.is_cuda or bool(h.any()):  # entropy term on: one [C, V] temporary for p
        p = torch.exp(z)
        z.add_(entropy.unsqueeze(-1)).mul_(p).mul_(-h.unsqueeze(-1)).addcmul_(p, g.unsqueeze(-1), value=-1.0)
    else:  # the default (no entropy term): -g p, in place, no temporary
        z.exp_().mul_(-g.unsqueeze(-1))
    z.scatter_add_(-1, targets.unsqueeze(-1), g.unsqueeze(-1))
    if out is not z:
        out.copy_(z)
    return out


class RowOps(NamedTuple):
    """The two row passes of one implementation. fuses_affine: they take raw GEMM output and apply
    bias and 1/T themselves (Triton: saves two [C, V] passes); otherwise torch_row_stats does it."""

    stats: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    grad: Callable[..., torch.Tensor]
    fuses_affine: bool


TORCH_ROWS = RowOps(torch_row_stats, torch_row_grad_, False)


def _affine_(z: torch.Tensor, bias: torch.Tensor | None, inv_t: float) -> torch.Tensor:
    if bias is not None:
        z += bias.float()
    if inv_t != 1.0:
        z *= inv_t
    return z


def raw_logits(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[C, V] fp32 x W^T. fp32 accumulation *and output* even for bf16 inputs: bf16-rounded logits
    cost up to ~0.06 nats of log-prob error (docs/kernels.md#precision)."""
    if x.is_cuda and x.dtype in LOW_PRECISION and weight.dtype == x.dtype:
        return torch.mm(x, weight.t(), out_dtype=torch.float32)
    return x.float() @ weight.float().t()


_DTYPE_ADDMM_OK = True  # torch builds whose addmm(out_dtype=fp32) rejects an fp32 `self` fall back once


def _addmm_fp32_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc (fp32) += a @ b with fp32 accumulation across calls; a, b fp32 or both bf16/fp16."""
    global _DTYPE_ADDMM_OK
    if a.dtype == torch.float32:
        acc.addmm_(a, b.float())
    elif not acc.is_cuda:  # CPU has no mixed-dtype GEMM; same numerics: products of bf16 are exact in fp32
        acc.addmm_(a.float(), b.float())
    else:
        if _DTYPE_ADDMM_OK:
            try:  # cuBLAS: bf16 inputs, fp32 C read and written in place, no [V, H] temporary
                torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
                return
            except RuntimeError:  # dtype checks run on the host before launch: no sync, no partial write
                _DTYPE_ADDMM_OK = False
        acc.add_(torch.mm(a, b, out_dtype=torch.float32))


def loss_and_token_grads(logp: torch.Tensor, entropy: torch.Tensor, tokens: ScoredTokens, settings: LossSettings,
                         mu: float, n_rollout: float, n_expert: float):
    """chord.algo.chord_loss of these C tokens: (loss, metrics, g = dL/dlogp [C], h = dL/dH [C]) by autograd."""
    with torch.enable_grad():
        lp = logp.detach().requires_grad_()
        ent = entropy.detach().requires_grad_()
        loss, metrics = objective(lp, ent, tokens.kind, tokens.old_logp.float(), tokens.advantages.float(), mu=mu,
                                  settings=settings, n_rollout=n_rollout, n_expert=n_expert,
                                  ref_logp=None if tokens.ref_logp is None else tokens.ref_logp.float(),
                                  scale=None if tokens.scale is None else tokens.scale.float())
        g, h = torch.autograd.grad(loss, (lp, ent), allow_unused=True)
    g = torch.zeros_like(logp) if g is None else g
    h = torch.zeros_like(logp) if h is None else h
    return loss.detach(), metrics, g, h


def chord_forward_backward(x, weight, bias, tokens: ScoredTokens, settings: LossSettings, mu: float, n_rollout: float,
                           n_expert: float, temperature: float, chunk_size: int, rows: RowOps = TORCH_ROWS):
    """Loss, metrics, per-token logp/entropy, dx, dW (fp32), db (fp32), in one sweep over token chunks."""
    n, dev = x.shape[0], x.device
    inv_t = 1.0 / temperature
    low = x.dtype in LOW_PRECISION and weight.dtype == x.dtype  # dz in the input dtype for the grad GEMMs
    w_mm = weight if low or weight.dtype == torch.float32 else weight.float()
    loss = torch.zeros((), dtype=torch.float32, device=dev)
    logp = torch.empty(n, dtype=torch.float32, device=dev)
    entropy = torch.empty(n, dtype=torch.float32, device=dev)
    dx = torch.empty_like(x)
    dw = torch.zeros(weight.shape, dtype=torch.float32, device=dev)
    db = torch.zeros(weight.shape[0], dtype=torch.float32, device=dev) if bias is not None else None
    dz_low = None
    metrics = []
    for i in range(0, n, chunk_size):
        sl = slice(i, min(n, i + chunk_size))
        z = raw_logits(x[sl], weight)  # [C, V] fp32 workspace
        aff = (bias, inv_t) if rows.fuses_affine else (None, 1.0)
        if not rows.fuses_affine:
            _affine_(z, bias, inv_t)
        lse, lp, ent = rows.stats(z, tokens.targets[sl], *aff)
        logp[sl], entropy[sl] = lp, ent
        part, m, g, h = loss_and_token_grads(lp, ent, tokens[sl], settings, mu, n_rollout, n_expert)
        loss += part
        metrics.append(m)
        if low:
            if dz_low is None:
                dz_low = torch.empty((min(chunk_size, n), weight.shape[0]), dtype=x.dtype, device=dev)
            out = dz_low[: z.shape[0]]
        else:
            out = z
        # g, h scaled by 1/T: dz below is dL/d(x W^T + b) directly (z = (x W^T + b) / T)
        dz = rows.grad(z, tokens.targets[sl], lse, ent, g * inv_t, h * inv_t, out, *aff)
        dx[sl] = dz @ w_mm
        _addmm_fp32_(dw, dz.t(), x[sl])
        if db is not None:
            db += dz.sum(0, dtype=torch.float32)
    merged = merge(metrics)
    merged["loss/total"] = loss.clone()  # the chunks' sum, not a re-summed metric
    return loss, merged, logp, entropy, dx, dw, db


class ChordLossFunction(torch.autograd.Function):
    """Gradients are computed in forward; backward scales them by the incoming scalar gradient.
    The op's metrics come back through `metrics_out` (a dict the caller passes in and reads after)."""

    @staticmethod
    def forward(ctx, x, weight, bias, tokens, settings, mu, n_rollout, n_expert, temperature, chunk_size, rows,
                metrics_out):
        loss, metrics, logp, entropy, dx, dw, db = chord_forward_backward(
            x, weight, bias, tokens, settings, mu, n_rollout, n_expert, temperature, chunk_size, rows)
        metrics_out.update(metrics)
        dw = dw.to(weight.dtype)  # fp32 accumulator -> parameter dtype, once, at the end
        ctx.save_for_backward(dx, dw, None if db is None else db.to(bias.dtype))
        ctx.mark_non_differentiable(logp, entropy)
        return loss, logp, entropy

    @staticmethod
    def backward(ctx, grad_loss, _glogp, _gent):
        dx, dw, db = ctx.saved_tensors  # used once: scale in place rather than holding two copies
        out_db = None if db is None else db.mul_(grad_loss)
        return (dx.mul_(grad_loss), dw.mul_(grad_loss), out_db) + (None,) * 9
