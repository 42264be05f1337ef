"""Where rollout engines live and when they sleep, resolved from the config (docs/architecture.md#rollout-placement)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from chord.config import ChordConfig
from chord.distributed import Dist


def placement(cfg: ChordConfig, world: int) -> str:
    """rank0 or per_rank (docs/architecture.md#rollout-placement); per_rank at world size 1 is rank0."""
    p = cfg.rollout.placement
    if p == "auto":
        p = "per_rank" if torch.cuda.is_available() and cfg.rollout.backend == "vllm" else "rank0"
    return p if world > 1 else "rank0"


class EngineSlot(NamedTuple):
    """This rank's place among the rollout engines."""

    index: int  # which engine this rank's belongs to
    count: int  # how many engines the run has
    reports: bool  # whether this rank reports its engine's rollouts (one rank per engine)


def engine_group(cfg: ChordConfig, d: Dist) -> EngineSlot:
    """(this rank's engine index, number of engines, whether this rank reports its engine's rollouts).
    per_rank: one engine per rollout.tensor_parallel_size consecutive ranks; rank0: one engine."""
    if placement(cfg, d.world) == "rank0":
        return EngineSlot(0, 1, d.is_main)
    tp = cfg.rollout.tensor_parallel_size
    return EngineSlot(d.rank // tp, d.world // tp, d.rank % tp == 0)


def sleeps(cfg: ChordConfig, world: int) -> bool:
    """Sleep mode: auto = per_rank on CUDA (the learner then has the GPU to itself while it trains)."""
    s = cfg.rollout.sleep_mode
    if s is None:
        return placement(cfg, world) == "per_rank" and torch.cuda.is_available()
    return s
