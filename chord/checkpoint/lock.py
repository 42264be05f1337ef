"""One run folder, one writer: an OS lock on `<run folder>/.chord.lock`, held for the whole run.

The same command launched twice (a scheduler retry, a second terminal) would otherwise interleave two
runs' metrics.jsonl, TensorBoard events and checkpoints in one folder, and one of them crashes halfway
through a save. The lock is `flock` on an open file: the kernel drops it when the process dies, however
it dies, so a SIGKILLed trainer never leaves a stale lock behind. The file records the holder's pid,
host and command, for the refusal message. In a multi-rank run rank 0 takes it and every rank gets its
verdict (chord.distributed.broadcast). Network filesystems: flock on NFS may be local to one client.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import IO

from chord.config import ConfigError
from chord.distributed import Dist, broadcast

LOCK = ".chord.lock"


class RunFolderInUse(ConfigError):
    """Another process holds the run folder (refused before anything is built or written)."""


class RunFolderGone(RuntimeError):
    """The run folder was deleted, moved or replaced while the run held it: nothing more can be saved there."""


class RunLock:
    """Held while alive (until release(), or until this process ends)."""

    def __init__(self, folder: str | Path, what: str = "trainer") -> None:
        self.folder = Path(folder)
        self.file: IO[str] | None = None
        # the folders this lock creates: a run refused before it writes anything removes them again (release)
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        f = open(self.folder / LOCK, "a+")  # noqa: SIM115 (kept open: the open file holds the lock)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunFolderInUse(f"run folder {self.folder} is in use by {holder}; wait for it to finish, or give "
                                 "this run another run.output_dir (--out for chord.eval)") from None
        f.seek(0)
        f.truncate()
        f.write(f"{what} pid {os.getpid()} on host {socket.gethostname()} ({' '.join(sys.argv)[:200]})\n")
        f.flush()
        self.file = f

    def gone(self) -> bool:
        """Whether the folder's path no longer leads to the lock file this process holds (the folder was
        deleted, moved or replaced: writes would fail, or land in a deleted folder through open files)."""
        if self.file is None:
            return False
        try:
            there = os.stat(self.folder / LOCK)
        except OSError:
            return True
        held = os.fstat(self.file.fileno())
        return (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino)

    def gone_message(self) -> str:
        return (f"the run folder {self.folder} was deleted or moved while the run was going; nothing more can be saved "
                "there. If it was moved, give run.output_dir its new place to resume from its last checkpoint; "
                "otherwise re-run the command to start again")

    def release(self, untouched: bool = False) -> None:
        """Drop the lock; `untouched`: the run wrote nothing (a refusal), so a folder that the lock itself
        created and that holds only the lock file goes too, leaving the disk as it was."""
        if self.file is None:
            return
        if untouched and self.created and [p.name for p in self.folder.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):
                (self.folder / LOCK).unlink()
                for p in self.created:  # innermost first
                    p.rmdir()
        with contextlib.suppress(OSError):
            fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.file = None


def holder(folder: str | Path) -> str | None:
    """Who holds `folder`'s lock now, or None (the probe takes and drops it at once)."""
    path = Path(folder) / LOCK
    if not path.is_file():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def lock_run_folder(folder: str | Path, d: Dist) -> RunLock | None:
    """Collective: rank 0 takes the run folder's lock; every rank raises RunFolderInUse if it could not."""
    lock, error = None, None
    if d.is_main:
        try:
            lock = RunLock(folder)
        except RunFolderInUse as e:
            error = str(e)
    error = broadcast(error)
    if error is not None:
        raise RunFolderInUse(error)
    return lock
