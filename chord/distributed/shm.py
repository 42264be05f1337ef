"""DeepSpeed's shared-memory all-reduce buffers of this run: removed at exit, and by a reaper after a kill.

With all ranks on one machine, DeepSpeed's CPU communication op creates one 66 MiB buffer per rank,
`/dev/shm/deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>`, and never unlinks
it (measured: 0.9 GiB left after seven 2-rank runs). The name holds this run's rendezvous address
and port, so no other live run can own it; unlinking is safe once every rank is past initialisation
(the ranks keep their mappings). After a kill, the reaper also keeps a file that a live process
outside this run maps: a later run on the same port made a new file of that name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SHM = Path("/dev/shm")
_names: dict[int, str] = {}  # rank -> buffer name, from the rendezvous at process-group start
_watched: list[bool] = []  # non-empty once rank 0 has started the watcher: at most one per process


def remember(world: int) -> None:
    """Record the buffer names DeepSpeed will derive from this process group's rendezvous (call at init)."""
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    _names.clear()
    _names.update({r: f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{r}" for r in range(world)})


def existing(ranks: list[int] | None = None) -> list[str]:
    """Paths of this run's buffers that exist now (all ranks', or the given ones)."""
    return [str(SHM / name) for r, name in _names.items() if (ranks is None or r in ranks) and (SHM / name).exists()]


def remove(rank: int) -> None:
    """This rank's own buffer, at a clean exit (after the process group is destroyed)."""
    for path in existing([rank]):
        with contextlib.suppress(OSError):
            os.remove(path)


def watch_buffers(is_main: bool) -> None:
    """Collective, once DeepSpeed is initialised (every local rank's buffer exists by then): rank 0
    starts a watcher that removes them all if it dies without cleaning up (SIGKILL, OOM killer)."""
    import torch.distributed as dist

    pids: list = [os.getpid()]
    if dist.is_initialized() and dist.get_world_size() > 1:
        pids = [None] * dist.get_world_size()
        dist.all_gather_object(pids, os.getpid())
    files = existing()
    if not is_main or not files or _watched:
        return
    from chord.distributed.reaper import start_reaper

    try:
        start_reaper([], files, pids)
        _watched.append(True)
    except ImportError:  # psutil missing: a clean exit still removes the buffers
        pass
