import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A model.cache_dir holding the built tiny model and task files (built once, ~10 s)."""
    cache = tmp_path_factory.mktemp("chord-cache")
    from chord.models.tiny import build_tiny_model
    from chord.tasks.tiny import generate_tiny_task

    build_tiny_model(cache)
    generate_tiny_task(cache / "tiny_task", seed=0)
    return cache


def run_cli(args: list[str], timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repo root in its own session; returns exit status, stdout and stderr.

    Output goes to files, not pipes, and the whole session is killed once the command has exited:
    a rank killed with SIGKILL (the preemption tests) orphans its vLLM engine process, which would
    otherwise hold a pipe open and keep running.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err, text=True, start_new_session=True,
                                env={**os.environ, **(env or {})})
        try:
            code = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read(), err.read())


def python() -> str:
    return sys.executable


def torchrun() -> list[str]:
    """A 2-rank launch on a free port (port 0 would leave the second rank waiting forever)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
