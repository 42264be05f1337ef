"""Clean up after a trainer that died without cleaning up (SIGKILL, OOM killer).

A SIGKILLed process runs no handlers, and vLLM's engine-core process (multiprocess mode) outlives
it, keeping its memory (a GPU's, on a cluster) and the shared-memory weight folder. `start_reaper`
launches a small detached watcher that waits for the trainer to exit, however it exits, then kills
the given child processes (psutil refuses a reused pid) and removes the given paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_WATCH = r"""
import shutil, sys, time
import psutil
try:
    parent = psutil.Process(int(sys.argv[1]))
    children = [psutil.Process(int(p)) for p in sys.argv[2].split(",") if p]
except psutil.NoSuchProcess:
    sys.exit(0)
while parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE:
    time.sleep(1.0)
for c in children:
    try:
        c.kill()
    except psutil.Error:
        pass
for p in sys.argv[3:]:
    shutil.rmtree(p, ignore_errors=True)
"""


def start_reaper(paths: list[Path]) -> subprocess.Popen | None:
    """Watch this process; when it is gone, kill its current descendants and delete `paths`."""
    import psutil  # a vLLM dependency

    kids = [str(c.pid) for c in psutil.Process().children(recursive=True)]
    return subprocess.Popen([sys.executable, "-c", _WATCH, str(os.getpid()), ",".join(kids), *map(str, paths)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
