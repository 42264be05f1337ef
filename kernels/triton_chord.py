"""triton: the chunked schedule with its two row passes fused into Triton kernels.

Three layers (Liger style): `_row_stats` / `_row_grad` (@triton.jit) -> `triton_row_stats` /
`triton_row_grad_` (launchers) -> `chord_kernels.chunked.ChordLossFunction` (autograd), with
`chord_kernels.full` (full fp32 logits, autograd) as the pure-torch reference beside it.

Per chunk of C tokens: cuBLAS GEMM into a [C, V] fp32 buffer (logits accumulated *and stored* in
fp32), `_row_stats` (bias, 1/T, online logsumexp, target log-prob and entropy in one read of the
row), O(C) torch for the loss terms and g = dL/dlogp, h = dL/dH, `_row_grad` (dz written once, in
the dtype of the dX/dW GEMMs), then the dX/dW GEMMs with dW accumulated in fp32. No host
synchronisation inside the op; no gradient-tile skipping (exact with an entropy term). Matches the
reference in fp32 to ~1e-6 relative; with bf16 inputs log-prob <= 1e-3, entropy <= 5e-3 absolute
(tests/kernels).

On a machine without CUDA it runs under the Triton interpreter (TRITON_INTERPRET=1 is set here
before triton is imported), so CI checks it on CPU at tiny shapes.
"""

from __future__ import annotations

import os
import sys

import torch

from chord_kernels.chunked import RowOps

if not torch.cuda.is_available():
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("chord_kernels triton on CPU needs TRITON_INTERPRET=1 set before triton is first imported "
                           "(transformers and datasets import it); chord/train.py does this for loss.impl=triton")
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _scaled_logits(z_row, BIAS, cols, mask, inv_t, HAS_BIAS: tl.constexpr):
    """(z + bias) / T for one tile of a row, in fp32 whatever the storage dtype."""
    z = tl.load(z_row + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        z += tl.load(BIAS + cols, mask=mask, other=0.0).to(tl.float32)
    return z * inv_t


@triton.jit
def _row_stats(Z, stride_z, Y, BIAS, inv_t, LSE, LOGP, ENT, V, HAS_BIAS: tl.constexpr, BLOCK_V: tl.constexpr):
    """One program per row: z = (Z + BIAS) * inv_t; lse, z_y - lse, H = lse - sum p z in one sweep."""
    row = tl.program_id(0)
    z_row = Z + row.to(tl.int64) * stride_z
    y = tl.load(Y + row)
    m = -float("inf")
    s = 0.0  # sum exp(z - m)
    t = 0.0  # sum exp(z - m) (m - z): H = log s + t / s, every term >= 0 (no cancellation)
    zy = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        z = tl.where(mask, _scaled_logits(z_row, BIAS, cols, mask, inv_t, HAS_BIAS), -float("inf"))
        m_new = tl.maximum(m, tl.max(z, 0))
        scale = tl.exp(m - m_new)
        e = tl.where(mask, tl.exp(z - m_new), 0.0)
        gap = tl.where(mask, m_new - z, 0.0)
        # rescale the running sums to the new max; on the first tile s == 0 and m == -inf
        shift = tl.where(s > 0, m_new - m, 0.0)  # never inf * 0
        t = scale * (t + shift * s) + tl.sum(e * gap, 0)
        s = s * scale + tl.sum(e, 0)
        zy += tl.sum(tl.where(cols == y, z, 0.0), 0)
        m = m_new
    lse = m + tl.log(s)
    tl.store(LSE + row, lse)
    tl.store(LOGP + row, tl.minimum(zy - lse, 0.0))  # log-probs are <= 0 (rounding can give +1 ulp)
    tl.store(ENT + row, tl.log(s) + t / s)


@triton.jit
def _row_grad(Z, stride_z, Y, BIAS, inv_t, LSE, ENT, G, H, OUT, stride_o, V, HAS_BIAS: tl.constexpr,
              BLOCK_V: tl.constexpr):
    """One program per row: OUT = g (onehot - p) - h p (log p + H), cast to OUT's dtype (OUT may be Z)."""
    row = tl.program_id(0)
    z_row = Z + row.to(tl.int64) * stride_z
    o_row = OUT + row.to(tl.int64) * stride_o
    y = tl.load(Y + row)
    lse = tl.load(LSE + row)
    ent = tl.load(ENT + row)
    g = tl.load(G + row)
    h = tl.load(H + row)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        logp = _scaled_logits(z_row, BIAS, cols, mask, inv_t, HAS_BIAS) - lse
        p = tl.exp(logp)
        dz = -g * p - h * p * (logp + ent)  # z - sum_j p_j z_j = log p + H
        dz = tl.where(cols == y, dz + g, dz)
        tl.store(o_row + cols, dz.to(OUT.dtype.element_ty), mask=mask)


def _block(v: int) -> int:
    # the interpreter pays per loop iteration: one wide block; on GPU 2048 fp32 keeps registers sane
    return min(triton.next_power_of_2(v), 8192 if INTERPRET else 2048)


def triton_row_stats(z: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None,
                     inv_t: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lse, logp, entropy) [C] fp32 of (z + bias) * inv_t; z [C, V] fp32 (row stride free), not modified."""
    c, v = z.shape
    assert z.stride(1) == 1
    lse, logp, ent = (torch.empty(c, dtype=torch.float32, device=z.device) for _ in range(3))
    if c:
        _row_stats[(c,)](z, z.stride(0), targets.contiguous(), z if bias is None else bias.contiguous(), float(inv_t),
                         lse, logp, ent, v, HAS_BIAS=bias is not None, BLOCK_V=_block(v))
    return lse, logp, ent


def triton_row_grad_(z: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, entropy: torch.Tensor,
                     g: torch.Tensor, h: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None = None,
                     inv_t: float = 1.0) -> torch.Tensor:
    """out [C, V] (fp32, may be z itself, or bf16/fp16) <- dL/dz; same bias/inv_t as triton_row_stats."""
    c, v = z.shape
    assert z.stride(1) == 1 and out.stride(1) == 1 and out.shape == z.shape
    # The interpreter truncates fp32 -> bf16 casts (measured: 48% of values differ from round-to-nearest;
    # fp_downcast_rounding="rtne" is ignored there), a bias that adds up in dW/db. GPUs round to nearest
    # even, so only under the interpreter: write fp32 in place and let torch round.
    dst = z if INTERPRET and out.dtype != torch.float32 else out
    if c:
        _row_grad[(c,)](z, z.stride(0), targets.contiguous(), z if bias is None else bias.contiguous(), float(inv_t),
                        lse, entropy, g.contiguous(), h.contiguous(), dst, dst.stride(0), v,
                        HAS_BIAS=bias is not None, BLOCK_V=_block(v))
    if dst is not out:
        out.copy_(dst)
    return out


TRITON_ROWS = RowOps(triton_row_stats, triton_row_grad_, True)
