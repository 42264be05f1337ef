"""The module DeepSpeed wraps: its forward is one micro-batch's forward *and* loss.

Why a module of its own: the learner must call `engine(...)`, never `engine.module.model(...)`.
ZeRO-3 decides whether a micro-batch's gradient partition is copied or added by `micro_step_id`,
which only `DeepSpeedEngine.forward()` advances; calling submodules directly made every micro-batch
overwrite the previous one (measured on the tiny model: grad norm 0.2599 at 1 micro-batch, 0.2521
at 2, 0.1255 at 4). The children keep the causal LM's own names (`model`, `lm_head`), so
DeepSpeed checkpoints have the same keys as the Hugging Face model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from chord.learner.head import ChordHead
from chord.learner.varlen_attention import packed_kwargs
from chord.types import ScoredTokens, TokenBatch

# (hidden [T, H], weight, bias, the batch's scored tokens) -> (loss, metrics) or log-probs
HeadFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, ScoredTokens], Any]


class PolicyStep(nn.Module):
    def __init__(self, causal_lm: nn.Module) -> None:
        super().__init__()
        if not isinstance(causal_lm.lm_head, ChordHead):
            causal_lm.lm_head = ChordHead(causal_lm.lm_head)
        self.model = causal_lm.model  # the decoder: same Parameters, same names as in causal_lm
        self.lm_head = causal_lm.lm_head
        ours = {id(p) for p in self.parameters()}
        missing = [n for n, p in causal_lm.named_parameters() if id(p) not in ours]
        if missing:
            raise ValueError(f"parameters outside .model and .lm_head are not supported: {missing[:3]}")

    def forward(self, batch: TokenBatch, fn: HeadFn) -> Any:
        """Decoder over the batch (padded or packed), then `fn` on the scored positions' hidden states."""
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         position_ids=batch.position_ids, use_cache=False, **packed_kwargs(batch.cu_seqlens))
        sel = batch.scored  # [B, L]
        hidden = out.last_hidden_state[sel]  # [T, H]: position t predicts targets[t]
        tok = ScoredTokens(batch.targets[sel], batch.kind[sel], batch.old_logp[sel], batch.advantages[sel],
                           scale=None if batch.scale is None else batch.scale[sel])
        # through the head module's own forward: under ZeRO-3 that gathers its weight and reduces its grad
        return self.lm_head(hidden, fn=lambda h, w, b: fn(h, w, b, tok))
