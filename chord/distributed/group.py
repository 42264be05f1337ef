"""torch.distributed set-up shared by `python`, `torchrun` and `deepspeed` launches (gloo on CPU)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from chord.distributed import shm


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    timeout: timedelta | None = None  # the process group's (run.dist_timeout_minutes); None: torch's default

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(timeout: timedelta | None = None) -> Dist:
    """Join the launcher's process group, or make a group of one for a plain `python` launch.

    `timeout` bounds every collective: NCCL's own default is 10 minutes, shorter than the phases in which
    the other ranks wait on rank 0 alone (evaluation with rollout.placement: rank0, best/ export)."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        _init_group(torch.device("cuda", local) if torch.cuda.is_available() else None, timeout)
    shm.remember(dist.get_world_size())
    return Dist(dist.get_rank(), dist.get_world_size(), local, timeout)


def _init_group(device: torch.device | None, timeout: timedelta | None) -> None:
    """NCCL bound to this rank's GPU (no guessing, and no warning, at a barrier) on CUDA; gloo elsewhere."""
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if device is not None:
        dist.init_process_group(backend="nccl", device_id=device, **kwargs)  # timeout: run.dist_timeout_minutes
    else:
        dist.init_process_group(backend="gloo", **kwargs)  # timeout: run.dist_timeout_minutes


_restores = 0


def restore_after_engine(was_initialized: bool, timeout: timedelta | None = None) -> bool:
    """An in-process vLLM engine (world size 1, or one per rank with external_launcher) destroys torch's
    default process group when it shuts down; the run's last barrier and a staged run's next stage need
    it again. Returns True if it was re-created."""
    global _restores
    if not was_initialized or dist.is_initialized():
        return False
    _restores += 1
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        os.environ["MASTER_PORT"] = str(_free_port())  # the old store's port may linger in TIME_WAIT
    else:  # every rank must pick the same new port without talking: derive it from the launcher's;
        # rank 0 then hosts the new store (torchrun's agent store would make every rank a client of a port
        # nobody serves)
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
        base = int(os.environ.setdefault("CHORD_BASE_MASTER_PORT", os.environ["MASTER_PORT"]))
        os.environ["MASTER_PORT"] = str(1024 + (base - 1024 + 97 * _restores) % (65535 - 1024))
    _init_group(torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None, timeout)
    return True


def broadcast(obj: Any, src: int = 0) -> Any:
    """Broadcast a picklable object from `src` to every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group cleanly: exiting with it open can abort a gloo peer mid-teardown."""
    if dist.is_initialized():
        rank = dist.get_rank()
        dist.barrier()
        dist.destroy_process_group()
        shm.remove(rank)  # DeepSpeed never unlinks its all-reduce buffer
