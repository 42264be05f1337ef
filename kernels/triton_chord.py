"""triton: the chunked schedule with its two row passes fused into Triton kernels.

Per chunk: cuBLAS GEMM into a [C, V] fp32 buffer, `_row_stats` (online logsumexp, target
log-prob, entropy in one read of the row), O(C) torch for the loss terms, `_row_grad` (dz written
in place over the logits), then the dX/dW GEMMs (chord_kernels.chunked). fp32 throughout the row
passes; no host synchronisation inside the op; no gradient-tile skipping. Matches
`chord_kernels.reference.chord_loss_reference` (fp32: 1e-5 relative; bf16 inputs: log-prob 1e-3).

On a machine without CUDA it runs under the Triton interpreter (TRITON_INTERPRET=1 is set here
before triton is imported), so CI checks it on CPU at tiny shapes.
"""

from __future__ import annotations

import os
import sys

import torch

if not torch.cuda.is_available():
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("chord_kernels triton on CPU needs TRITON_INTERPRET=1 set before triton is first imported "
                           "(transformers and datasets import it); chord/train.py does this for loss.impl=triton")
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _row_stats(Z, stride_z, Y, LSE, LOGP, ENT, V, BLOCK_V: tl.constexpr):
    row = tl.program_id(0)
    z_row = Z + row.to(tl.int64) * stride_z
    y = tl.load(Y + row)
    m = -float("inf")
    s = 0.0  # sum exp(z - m)
    t = 0.0  # sum exp(z - m) (m - z): H = log s + t / s, all terms >= 0 (no cancellation)
    zy = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        z = tl.load(z_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(z, 0))
        scale = tl.exp(m - m_new)
        e = tl.where(mask, tl.exp(z - m_new), 0.0)
        gap = tl.where(mask, m_new - z, 0.0)
        # rescale the running sum to the new max; on the first tile s == 0 and m == -inf
        shift = tl.where(s > 0, m_new - m, 0.0)  # never inf * 0
        t = scale * (t + shift * s) + tl.sum(e * gap, 0)
        s = s * scale + tl.sum(e, 0)
        zy += tl.sum(tl.where(cols == y, z, 0.0), 0)
        m = m_new
    lse = m + tl.log(s)
    tl.store(LSE + row, lse)
    tl.store(LOGP + row, zy - lse)
    tl.store(ENT + row, tl.log(s) + t / s)


@triton.jit
def _row_grad(Z, stride_z, Y, LSE, ENT, G, H, V, BLOCK_V: tl.constexpr):
    row = tl.program_id(0)
    z_row = Z + row.to(tl.int64) * stride_z
    y = tl.load(Y + row)
    lse = tl.load(LSE + row)
    mean_z = lse - tl.load(ENT + row)  # sum_j p_j z_j
    g = tl.load(G + row)
    h = tl.load(H + row)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        z = tl.load(z_row + cols, mask=mask, other=0.0).to(tl.float32)
        p = tl.exp(z - lse)
        dz = -g * p - h * p * (z - mean_z)
        dz = tl.where(cols == y, dz + g, dz)
        tl.store(z_row + cols, dz, mask=mask)


def _block(v: int) -> int:
    # the interpreter pays per loop iteration: one wide block; on GPU 2048 fp32 keeps registers sane
    return min(triton.next_power_of_2(v), 8192 if INTERPRET else 2048)


def triton_row_stats(z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c, v = z.shape
    lse, logp, ent = (torch.empty(c, dtype=torch.float32, device=z.device) for _ in range(3))
    if c:
        _row_stats[(c,)](z, z.stride(0), targets.contiguous(), lse, logp, ent, v, BLOCK_V=_block(v))
    return lse, logp, ent


def triton_row_grad_(z: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                     g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    c, v = z.shape
    if c:
        _row_grad[(c,)](z, z.stride(0), targets.contiguous(), lse, entropy, g.contiguous(), h.contiguous(), v,
                        BLOCK_V=_block(v))
    return z
