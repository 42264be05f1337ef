"""Clean up after a trainer that died without cleaning up (SIGKILL, OOM killer).

A SIGKILLed process runs no handlers, and vLLM's engine-core process (multiprocess mode) outlives
it, keeping its memory (a GPU's, on a cluster) and the shared-memory weight folder; DeepSpeed's
shared-memory all-reduce buffers stay in /dev/shm too. `start_reaper` launches a small detached
watcher that waits for the trainer to exit, however it exits, then kills the given child processes
(psutil refuses a reused pid) and removes the given folders and files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_WATCH = r"""
import json, os, shutil, sys, time
import psutil
def process(spec):  # "pid@create_time" -> the very process, or None if it is gone (its pid may be reused)
    pid, born = spec.split("@")
    try:
        p = psutil.Process(int(pid))
        return p if abs(p.create_time() - float(born)) < 1e-3 else None
    except psutil.Error:
        return None
def alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
parent = process(sys.argv[1])  # None: killed before this watcher started, so clean up at once
children = [c for c in map(process, filter(None, sys.argv[2].split(","))) if c is not None]
while parent is not None and alive(parent):
    time.sleep(1.0)
for c in children:
    try:
        c.kill()
    except psutil.Error:
        pass
spec = json.loads(sys.argv[3])
def mapped_elsewhere(path):  # a live process outside this run maps it: a later run reused the name
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in spec["run_pids"]:
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                if path in f.read():
                    return True
        except OSError:
            pass
    return False
for path in spec["files"]:
    if os.path.exists(path) and not mapped_elsewhere(path):
        try:
            os.remove(path)
        except OSError:
            pass
for p in sys.argv[4:]:
    shutil.rmtree(p, ignore_errors=True)
"""


def start_reaper(paths: list[Path], files: list[str] | None = None, run_pids: list[int] | None = None,
                 ) -> subprocess.Popen | None:
    """Watch this process; when it is gone, kill its current descendants, delete the folders `paths` and
    the files `files`, except a file that a live process other than `run_pids` (this run's ranks) maps."""
    import psutil  # a vLLM dependency

    me = psutil.Process()
    kids = [f"{c.pid}@{c.create_time()!r}" for c in me.children(recursive=True)]
    spec = json.dumps({"files": files or [], "run_pids": run_pids or [os.getpid()]})
    return subprocess.Popen([sys.executable, "-c", _WATCH, f"{me.pid}@{me.create_time()!r}", ",".join(kids), spec,
                             *map(str, paths)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
