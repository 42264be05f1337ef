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


# `python chord/train.py ...` and `python -m chord.eval|chord.export ...` are forked from one warm server that
# imported the stack once (chord.distributed.warm_launch; about 10 s saved a launch, the suite's largest cost).
# A forked run computes what a fresh process does (tests/integration/test_method_comparison.py); runs that
# must start cold stay cold: torchrun's ranks, `-c` scripts, test helpers, an environment a process reads at
# its start (MALLOC_*), and README's first run (test_quickstart.py). CHORD_TEST_COLD=1: every run cold.
WARM = (["chord/train.py"], ["-m", "chord.eval"], ["-m", "chord.export"])
_server = None


def warm_server():
    """The session's server, started on first use (closed by the session fixture below)."""
    global _server
    if _server is None:
        from benchmarks.method_comparison import PRELOAD
        from chord.distributed.warm_launch import WarmServer

        log = Path(tempfile.mkdtemp(prefix="chord-warm-")) / "server.log"
        # as chord/train.py does before it imports torch (the server imports torch before any run)
        env = {**os.environ, "TORCH_CPP_LOG_LEVEL": os.environ.get("TORCH_CPP_LOG_LEVEL", "ERROR")}
        _server = WarmServer(sys.executable, [*PRELOAD, "chord.eval", "chord.export"], cwd=ROOT, env=env, log=log)
    return _server


@pytest.fixture(scope="session", autouse=True)
def _close_warm_server():
    yield
    if _server is not None:
        _server.close()


def _warm(args: list[str], env: dict | None) -> bool:
    return (args[0] == sys.executable and any(args[1:1 + len(w)] == w for w in WARM)
            and not os.environ.get("CHORD_TEST_COLD") and not any(k.startswith("MALLOC_") for k in env or {}))


def run_cli(args: list[str], timeout: int = 600, env: dict | None = None,
            cold: bool = False) -> subprocess.CompletedProcess:
    """Run a command from the repo root in its own session; returns exit status, stdout and stderr. `cold`: a
    fresh process even where the warm server could fork it.

    Output goes to files, not pipes, and the whole session is killed once the command has exited:
    a rank killed with SIGKILL (the preemption tests) orphans its vLLM engine process, which would
    otherwise hold a pipe open and keep running.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        full_env = {**os.environ, **(env or {})}
        if not cold and _warm(args, env):
            proc = warm_server().start(args[1:], out, err, env=full_env, new_session=True)
        else:
            with open(out, "w") as o, open(err, "w") as e:
                proc = subprocess.Popen(args, cwd=ROOT, stdout=o, stderr=e, text=True, start_new_session=True,
                                        env=full_env)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.returncode is None:  # timed out: collect the killed run's status (the server waits for it)
                proc.wait()
        return subprocess.CompletedProcess(args, code, out.read_text(), err.read_text())


def python() -> str:
    return sys.executable


def torchrun() -> list[str]:
    """A 2-rank launch on a free port (port 0 would leave the second rank waiting forever)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
