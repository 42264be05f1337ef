"""Where rollout engines live and when they sleep, resolved from the config (docs/architecture.md#rollout-placement)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from chord.config import ChordConfig, ConfigError
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
    """Sleep mode: auto = per_rank on CUDA (the learner then has the GPU to itself while it trains); on CUDA
    only (vLLM's sleep mode needs its CuMem allocator)."""
    s = cfg.rollout.sleep_mode
    if s is None:
        return placement(cfg, world) == "per_rank" and torch.cuda.is_available()
    return s and torch.cuda.is_available()  # vLLM's sleep mode is CUDA-only: elsewhere nothing sleeps


def engine_mode(cfg: ChordConfig, world: int) -> tuple[bool, bool]:
    """(per_rank, multiprocess) of the rollout engine, or a one-line ConfigError for a combination that
    cannot work; called before anything is built (docs/architecture.md#rollout-placement)."""
    r = cfg.rollout
    per_rank = placement(cfg, world) == "per_rank"
    tp = r.tensor_parallel_size
    # an in-process engine (vLLM's `uni` executor) runs one worker: it deadlocks inside a job of several
    # ranks (it reuses the job's process group) and waits forever for tensor-parallel peers
    multiprocess = not per_rank and ((world > 1 or tp > 1) if r.multiprocess is None else r.multiprocess)
    if world > 1 and not per_rank and not multiprocess:
        raise ConfigError("'rollout.multiprocess' must not be false with several ranks (in-process vLLM deadlocks)")
    if tp > 1 and not per_rank and not multiprocess and r.backend == "vllm":
        raise ConfigError(f"'rollout.tensor_parallel_size' ({tp}) needs a multiprocess engine: with "
                          "rollout.multiprocess=false vLLM runs one worker in this process, which would wait "
                          "forever for its tensor-parallel peers")
    if per_rank and r.backend != "vllm":
        raise ConfigError("'rollout.placement: per_rank' needs rollout.backend: vllm")
    if per_rank and world % tp:
        raise ConfigError(f"'rollout.tensor_parallel_size' ({tp}) must divide the number of ranks ({world}) "
                          "with rollout.placement: per_rank")
    return per_rank, multiprocess
