"""Clean up after a trainer that died without cleaning up (SIGKILL, OOM killer).

A SIGKILLed process runs no handlers, and vLLM's engine-core process (multiprocess mode) outlives
it, keeping its memory (a GPU's, on a cluster); DeepSpeed's shared-memory all-reduce buffers stay
in /dev/shm too. `start_reaper` launches this file as a small
detached watcher (`main`) that waits for the trainer to exit, however it exits, then kills the given
child processes (psutil refuses a reused pid) and removes the given folders and files.

The watcher is run by path, not as `-m chord.distributed.reaper`: it then imports only the standard
library and psutil (not the chord package: chord.distributed's `__init__` pulls in torch), so it
starts fast and works without an install. Its folder, chord/distributed/, comes first on its
sys.path, so no module there may take the name of a standard-library module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def start_reaper(paths: list[Path], files: list[str] | None = None, run_pids: list[int] | None = None,
                 ) -> subprocess.Popen | None:
    """Watch this process; when it is gone, kill its current descendants, delete the folders `paths` and
    the files `files`, except a file that a live process other than `run_pids` (this run's ranks) maps."""
    import psutil  # a vLLM dependency

    me = psutil.Process()
    kids = [f"{c.pid}@{c.create_time()!r}" for c in me.children(recursive=True)]
    spec = json.dumps({"files": files or [], "run_pids": run_pids or [os.getpid()]})
    return subprocess.Popen([sys.executable, __file__, f"{me.pid}@{me.create_time()!r}", ",".join(kids), spec,
                             *map(str, paths)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _process(spec: str):
    """The process named "pid@create_time", or None if it is gone (its pid may since be reused)."""
    import psutil

    pid, born = spec.split("@")
    try:
        p = psutil.Process(int(pid))
        return p if abs(p.create_time() - float(born)) < 1e-3 else None
    except psutil.Error:
        return None


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _mapped_elsewhere(path: str, run_pids: list[int]) -> bool:
    """A live process outside this run maps it: a later run reused the name."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in run_pids:
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                if path in f.read():
                    return True
        except OSError:
            pass
    return False


def main(argv: Sequence[str]) -> None:
    """The watcher: argv is PARENT CHILDREN SPEC [FOLDER...], as `start_reaper` passes them (PARENT and each
    comma-separated child are "pid@create_time"; SPEC is JSON with "files" and "run_pids")."""
    import psutil

    parent_spec, child_specs, spec_json, *folders = argv
    parent = _process(parent_spec)  # None: killed before this watcher started, so clean up at once
    children = [c for c in map(_process, filter(None, child_specs.split(","))) if c is not None]
    while parent is not None and _alive(parent):
        time.sleep(1.0)
    for c in children:
        with contextlib.suppress(psutil.Error):
            c.kill()
    spec = json.loads(spec_json)
    for path in spec["files"]:
        if os.path.exists(path) and not _mapped_elsewhere(path, spec["run_pids"]):
            with contextlib.suppress(OSError):
                os.remove(path)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
