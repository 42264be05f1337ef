"""The global SFT coefficient mu(s) of CHORD (docs/algorithm.md#mu-schedule), 1-indexed step s."""

from __future__ import annotations

import math


def mu_at(step: int, *, peak: float, valley: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warm-up from 0 to peak over W steps, cosine decay to valley over D steps, then valley.

    W = D = 0 gives the constant `valley` (CHORD-phi sets peak = valley).
    """
    if step < 1:
        raise ValueError(f"training steps are 1-indexed, got step={step}")
    w, d = warmup_steps, decay_steps
    if step < w:
        return peak * step / w
    if step < w + d:
        return valley + (peak - valley) * 0.5 * (1.0 + math.cos(math.pi * (step - w) / d))
    return valley
