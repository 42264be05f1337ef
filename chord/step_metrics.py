"""Reduce per-micro-batch metric contributions to step values (sum, or max:/min: prefixed keys)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def merge(contribs: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Combine micro-batch metric dicts: plain keys add, `max:`/`min:` keys take the extreme."""
    out: dict[str, torch.Tensor] = {}
    for d in contribs:
        for k, v in d.items():
            v = v.detach().float()
            if k not in out:
                out[k] = v.clone()
            elif k.startswith("max:"):
                out[k] = torch.maximum(out[k], v)
            elif k.startswith("min:"):
                out[k] = torch.minimum(out[k], v)
            else:
                out[k] = out[k] + v
    return out


def all_reduce(metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reduce merged metrics across data-parallel ranks (no-op without torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return metrics
    keys = sorted(metrics)
    for prefix, op in (("max:", dist.ReduceOp.MAX), ("min:", dist.ReduceOp.MIN), ("", dist.ReduceOp.SUM)):
        group = [k for k in keys if k.startswith(prefix) and (prefix or k[:4] not in ("max:", "min:"))]
        if not group:
            continue
        buf = torch.stack([metrics[k] for k in group])
        dist.all_reduce(buf, op=op)
        for k, v in zip(group, buf):
            metrics[k] = v
    return metrics


def to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Strip reduction prefixes; drop extremes that saw no token (still +-inf)."""
    out = {}
    for k, v in metrics.items():
        x = float(v)
        if k[:4] in ("max:", "min:"):
            if math.isinf(x):
                continue
            k = k[4:]
        out[k] = x
    return out


def memory_metrics(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's memory as `max:` step metrics (after all_reduce: the largest rank's). Host RSS always; on
    CUDA the peak allocated and reserved bytes since the last step's (an in-process engine's generation
    included; verl logs the first as perf/max_memory_allocated_gb), whose counters then restart. An engine in
    its own process is not counted."""
    import psutil

    gib = 2**30
    out = {"max:memory/host_rss_gb": psutil.Process().memory_info().rss / gib}
    if device.type == "cuda":
        out["max:memory/allocated_max_gb"] = torch.cuda.max_memory_allocated(device) / gib
        out["max:memory/reserved_max_gb"] = torch.cuda.max_memory_reserved(device) / gib
        torch.cuda.reset_peak_memory_stats(device)
    return {k: torch.tensor(v, device=device) for k, v in out.items()}


# step metrics whose values differ between two runs that compute the same thing (wall clock, memory)
NOT_REPRODUCIBLE = ("time/", "throughput/", "memory/")
ROLLOUT_ONLY = ("entropy/rollout", "policy/", "gap/", "kl/")
EXPERT_ONLY = ("entropy/expert", "sft/")


def drop_absent(metrics: dict[str, float], n_rollout: int, n_expert: int) -> dict[str, float]:
    """A term with no tokens in the step logs nothing rather than a misleading 0 (SFT has no rollouts)."""
    absent = (ROLLOUT_ONLY if n_rollout == 0 else ()) + (EXPERT_ONLY if n_expert == 0 else ())
    return {k: v for k, v in metrics.items() if not (absent and k.startswith(absent))}
