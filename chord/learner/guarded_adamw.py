"""AdamW that refuses a step whose gradients are not finite (the non-finite guard, ZeRO-0).

DeepSpeed's engine reads `optimizer.overflow` after `step()`: when it is set the lr schedule does
not advance and `engine.skipped_steps` grows, the same contract as its own ZeRO/bf16 optimizers,
which already skip a step with a NaN/Inf gradient norm. Weights and optimizer state stay unchanged.
"""

from __future__ import annotations

import torch


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite steps, or one that could not be skipped."""


class GuardedAdamW(torch.optim.AdamW):
    overflow: bool = False

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        # one fused reduction; any NaN/Inf anywhere makes the sum non-finite
        total = torch.stack([g.float().abs().sum() for g in grads]).sum() if grads else torch.zeros(())
        self.overflow = not bool(torch.isfinite(total))
        if self.overflow:
            for g in grads:
                g.zero_()
            return None
        return super().step(closure)
