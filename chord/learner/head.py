"""An lm_head that can hand its weight to a token-level loss instead of producing logits.

The learner calls `head(hidden, fn=...)` so the weight is used inside the head module's own
forward: under ZeRO-3 that is what makes DeepSpeed gather the weight and reduce its gradient.
Called with hidden states alone it is a plain linear layer, so HF forward/generate still work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ChordHead(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight  # same Parameter: tied embeddings stay tied
        self.bias = linear.bias

    def forward(self, hidden: torch.Tensor, fn: Callable[..., Any] | None = None) -> Any:
        if fn is None:
            return F.linear(hidden, self.weight, self.bias)
        return fn(hidden, self.weight, self.bias)
