"""Many runs, one import: a server process imports the training stack once and forks every run from it.

A short chord run spends most of its start importing torch, vLLM, DeepSpeed and transformers (~10 s on the
2-core CI machine) and in the garbage collector, which scans those modules' objects each time vLLM collects
while it starts its engine (~3 s). A grid of short runs (benchmarks/method_comparison.py --quick: 6 steps
each) is mostly that. Here a server imports the stack, freezes its heap (gc.freeze: later collections skip
those objects) and forks one child per run. Each run is still its own process, started as `python SCRIPT
ARGS...` would be (sys.argv, sys.path[0], __main__, default SIGINT, atexit handlers at exit): its own log,
exit status and signals, so a crash or kill affects only that run, and a run computes exactly what a fresh
process computes (tests/integration/test_method_comparison.py compares the two).

Not used where CUDA devices are visible (a process that initialised CUDA must not fork): `start` then
returns ordinary subprocesses. Recipes with loss.impl triton on CPU need TRITON_INTERPRET=1 set before the
server starts (chord/train.py sets it only before triton's first import, which the server has done).

    from chord.distributed.warm_launch import WarmServer
    server = WarmServer(python, preload=["chord.train", ...], cwd=ROOT, env=env, log=grid_log)
    proc = server.start([script, *args], run_log)  # Popen-like: poll(), wait(), terminate(), returncode
    server.close()
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


class WarmServer:
    """The client side: starts the server lazily on the first `start`, then asks it to fork each run."""

    def __init__(self, python: str, preload: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.python, self.preload, self.cwd, self.env, self.log = python, preload, cwd, env, log
        self.proc: subprocess.Popen | None = None
        self.fallback: str | None = None  # why runs are plain subprocesses
        self.import_s = 0.0
        self._buf = b""

    def warm_up(self) -> None:
        """Start the server now (otherwise the first `start` does): its imports then count in no run's time."""
        if self.proc is None and self.fallback is None:
            self._start_server()

    def start(self, argv: list[str], log: Path, err: Path | None = None, env: dict[str, str] | None = None,
              new_session: bool = False) -> WarmProcess | subprocess.Popen:
        """Run `python argv...` (argv ["-m", module, ...] runs a module) with stdout to `log` and stderr to
        `err` (default: `log` too), in `env` (default: the server's) and, with `new_session`, in a session of
        its own (its process group can be killed whole, as Popen(start_new_session=True) allows)."""
        self.warm_up()
        if self.fallback is not None:
            with open(log, "a") as out, open(err or log, "a") as errors:  # the child holds its own descriptors
                return subprocess.Popen([self.python, *argv], cwd=self.cwd, env=env or self.env, stdout=out,
                                        stderr=errors if err else subprocess.STDOUT, start_new_session=new_session)
        assert self.proc is not None and self.proc.stdin is not None
        for f in (log, err or log):
            f.touch()  # the child opens it after the fork; a caller polling the log must not find it missing
        req = {"argv": argv, "log": str(log), "err": str(err or log), "env": env, "new_session": new_session}
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        return WarmProcess(self, int(self.read()["pid"]))

    def _start_server(self) -> None:
        r, w = os.pipe()  # the server's replies; its stdout and stderr are the grid's log
        with open(self.log, "a") as log:
            # this file as a script, not `-m`: importing the chord package first would import torch before
            # serve() sets PYTORCH_NVML_BASED_CUDA_CHECK. The client's sys.path: the server imports chord
            # from where the client would
            cmd = [self.python, __file__, "--serve", str(w), json.dumps(sys.path), *self.preload]
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=log,
                                         stderr=log, pass_fds=(w,))
        os.close(w)
        self.replies = r
        ready = self.read()
        if not ready.get("ready"):
            self.fallback = ready.get("why", "the server did not start")
            self.close()
        else:
            self.import_s = ready["import_s"]

    def read(self, timeout: float | None = None) -> dict:
        """The server's next reply; {} if none came within `timeout`. A dead server is an error."""
        while b"\n" not in self._buf:
            if timeout is not None and not select.select([self.replies], [], [], timeout)[0]:
                return {}
            chunk = os.read(self.replies, 65536)
            if not chunk:
                raise RuntimeError(f"warm_launch: the server exited (code {self.proc and self.proc.poll()}); "
                                   f"see {self.log}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the server's loop ends at end of input
            self.proc.wait()
            os.close(self.replies)
            self.proc = None


class WarmProcess:
    """One forked run, as much of subprocess.Popen as the benchmark uses."""

    def __init__(self, server: WarmServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0.0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; as Popen.wait, subprocess.TimeoutExpired if the run is still going after `timeout`."""
        if self.returncode is None:
            reply = self.server.read(timeout)
            if not reply:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout or 0.0)
            self.returncode = int(reply["exit"])
        return self.returncode

    def terminate(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(self.pid, signal.SIGTERM)


# ------------------------------------------------------------------------------------------------ server


def serve(reply_fd: int, path: list[str], preload: list[str]) -> None:
    sys.path[:] = path
    replies = os.fdopen(reply_fd, "w")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the run (it checkpoints) and the client

    def reply(**kw: object) -> None:
        replies.write(json.dumps(kw) + "\n")
        replies.flush()

    t0 = time.perf_counter()
    # is_available() through NVML initialises no CUDA; a CUDA machine gets plain subprocesses
    before = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    import torch

    cuda = torch.cuda.is_available()
    if before is None:  # the runs see the user's environment
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK")
    else:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = before
    if cuda:
        return reply(ready=False, why="CUDA devices are visible: a process must not fork after CUDA starts")
    for name in preload:
        __import__(name)
    if torch.cuda.is_initialized():
        return reply(ready=False, why=f"importing {preload} initialised CUDA")
    import gc

    gc.collect()
    gc.freeze()  # the imported modules' objects: never scanned again, in this process or its children
    reply(ready=True, import_s=round(time.perf_counter() - t0, 2))
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()  # nothing buffered here may be written again by the child
        pid = os.fork()
        if pid == 0:
            replies.close()
            run_child(req["argv"], req["log"], req.get("err"), req.get("env"), req.get("new_session", False))
        reply(pid=pid)
        _, status = os.waitpid(pid, 0)
        reply(pid=pid, exit=os.waitstatus_to_exitcode(status))


def run_child(argv: list[str], log: str, err: str | None = None, env: dict[str, str] | None = None,
              new_session: bool = False) -> None:
    """In the forked child: become `python argv...` (or `python -m module ...`) with stdout to `log` and stderr
    to `err` (default `log`), in `env` if given; never returns. Variables a library read when the server
    imported it keep the server's value (e.g. TORCH_CPP_LOG_LEVEL); those read when used take `env`'s."""
    import atexit
    import runpy
    import traceback

    code = 1
    try:
        if new_session:
            os.setsid()
        for target, path in ((1, log), (2, err or log)):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, target)
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        try:
            if argv[0] == "-m":  # as `python -m module` sets them: argv[0] the module's file, sys.path[0] the cwd
                sys.argv = list(argv[1:])
                sys.path[0] = os.getcwd()
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path[0] = str(Path(argv[0]).resolve().parent)  # as `python SCRIPT` sets it
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:  # as the interpreter maps it
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:  # the interpreter's own teardown is skipped: ~3 s of freeing modules the server keeps anyway
        os._exit(code)


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--serve":
    serve(int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:])
