"""Attention for packed micro-batches: rows concatenated into one sequence never attend to each other.

The learner calls the model with `cu_seq_lens_q/k` and `max_length_q/k` (flash-attention's varlen
keywords, which transformers passes through every layer to the attention function):
* `flash_attention_2` (CUDA with flash-attn installed) reads them natively: no mask, no padding;
* otherwise the model runs `chord_varlen`, registered here: SDPA causal attention per row (the
  same O(sum of len^2) work, no [L, L] mask; on CUDA SDPA picks its own flash kernel per row).
  A 4D block-diagonal mask would also be exact but costs L^2 memory (1 GiB at 16k tokens in fp32).
Without those keywords (right-padded batches, the reference model of a padded run) `chord_varlen`
is plain SDPA with transformers' usual mask, so one model serves both layouts.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "chord_varlen"


def varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, cu_seq_lens_q: torch.Tensor | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query/key/value [1, heads, L, D] -> ([1, L, heads, D], None), causal within each packed row."""
    for k in ("cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids"):
        kwargs.pop(k, None)
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = cu_seq_lens_q.tolist()  # one host sync per layer; rows are few and long
    outs = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                   is_causal=True, **kwargs)[0] for a, b in zip(bounds[:-1], bounds[1:])]
    return torch.cat(outs, dim=1), None


def varlen_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask for packed input (rows are separated by `cu_seq_lens`); SDPA's mask otherwise."""
    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(NAME, varlen_attention)
AttentionMaskInterface.register(NAME, varlen_mask)


def attention_for(device: torch.device) -> str:
    """flash_attention_2 where it is installed (CUDA), chord_varlen (SDPA per row) elsewhere."""
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return NAME


def packed_kwargs(cu_seqlens: torch.Tensor | None) -> dict[str, Any]:
    """The varlen keywords for a packed batch (nothing for a padded one)."""
    if cu_seqlens is None:
        return {}
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return {"cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens, "max_length_q": longest, "max_length_k": longest}
