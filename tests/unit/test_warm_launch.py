"""chord.distributed.warm_launch: a forked run behaves as `python SCRIPT ARGS` would (argv, sys.path[0], output,
exit status, signals, atexit), one after another from one server; and the fresh-process fallback. (That a forked
chord run computes what a fresh one does: tests/integration/test_method_comparison.py.)"""

import json
import os
import subprocess
import sys
import time

import pytest

from chord.distributed.warm_launch import WarmProcess, WarmServer

pytestmark = pytest.mark.unit

SCRIPT = r'''
import atexit, json, os, sys, time
atexit.register(lambda: print("atexit ran", flush=True))
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "pid": os.getpid(),
                  "ppid": os.getppid()}), flush=True)
mode = sys.argv[1]
if mode == "code":
    sys.exit(int(sys.argv[2]))
if mode == "message":
    sys.exit("bad recipe: a one-line reason")
if mode == "raise":
    raise ValueError("boom")
if mode == "sleep":
    print("sleeping", flush=True)
    time.sleep(60)
'''


@pytest.fixture
def server(tmp_path):
    s = WarmServer(sys.executable, ["json"], cwd=tmp_path, env=dict(os.environ), log=tmp_path / "server.log")
    yield s
    s.close()


def _run(server, tmp_path, *args, name="run"):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    log = tmp_path / f"{name}.log"
    proc = server.start([str(script), *args], log)
    return proc, log


def test_runs_are_forked_children_of_one_server_with_their_own_argv_output_and_exit_status(server, tmp_path):
    results = []
    for i, (args, code) in enumerate([(("ok",), 0), (("code", "7"), 7), (("message",), 1), (("raise",), 1)]):
        proc, log = _run(server, tmp_path, *args, name=f"r{i}")
        assert isinstance(proc, WarmProcess) and proc.wait(timeout=30) == code and proc.poll() == code
        lines = log.read_text().splitlines()
        first = json.loads(lines[0])
        assert first["argv"] == [str(tmp_path / "job.py"), *args]
        assert first["path0"] == str(tmp_path) and first["name"] == "__main__"
        assert first["ppid"] == server.proc.pid  # forked from the server, not started by us
        assert "atexit ran" in lines  # exit handlers run, as at a normal interpreter exit
        results.append((first["pid"], lines))
    assert len({pid for pid, _ in results}) == 4
    assert "bad recipe: a one-line reason" in results[2][1]
    assert any("ValueError: boom" in line for line in results[3][1])
    assert server.import_s >= 0 and server.fallback is None


def test_wait_times_out_like_popen_and_terminate_stops_only_the_run(server, tmp_path):
    proc, log = _run(server, tmp_path, "sleep")
    deadline = time.time() + 30
    assert log.is_file()  # before the child has run: `start` creates it
    while "sleeping" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert proc.poll() is None
    proc.terminate()
    assert proc.wait(timeout=30) == -15  # SIGTERM, as Popen reports it
    again, _ = _run(server, tmp_path, "ok", name="after")  # the server lives on
    assert again.wait(timeout=30) == 0


def test_the_fallback_starts_fresh_processes(tmp_path):
    s = WarmServer(sys.executable, [], cwd=tmp_path, env=dict(os.environ), log=tmp_path / "server.log")
    s.fallback = "--no-warm"
    proc, log = _run(s, tmp_path, "code", "3")
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=30) == 3
    assert json.loads(log.read_text().splitlines()[0])["ppid"] == os.getpid()
    assert s.proc is None  # no server was started
    s.close()


def test_a_preload_that_fails_is_an_error_not_a_hang(tmp_path):
    s = WarmServer(sys.executable, ["no_such_module_xyz"], cwd=tmp_path, env=dict(os.environ),
                   log=tmp_path / "server.log")
    with pytest.raises(RuntimeError, match="the server exited"):
        s.warm_up()
    assert "No module named 'no_such_module_xyz'" in (tmp_path / "server.log").read_text()


def test_a_run_can_have_its_own_stderr_environment_session_and_be_a_module(server, tmp_path):
    """What the integration tests' run_cli needs: stdout and stderr apart, the run's own environment (the
    CHORD_TEST_* faults), `python -m module` and a session of its own (its process group killed whole)."""
    pkg = tmp_path / "warmpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "job.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv, 'path0': sys.path[0], 'name': __name__, 'sid': os.getsid(0),\n"
        "                  'pid': os.getpid(), 'fault': os.environ.get('CHORD_TEST_X')}))\n"
        "print('to stderr', file=sys.stderr)\n")
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    proc = server.start(["-m", "warmpkg.job", "a", "b"], out, err, env={**os.environ, "CHORD_TEST_X": "3"},
                        new_session=True)
    assert proc.wait(timeout=30) == 0
    info = json.loads(out.read_text())
    assert info["argv"] == [str(pkg / "job.py"), "a", "b"] and info["name"] == "__main__"
    assert info["path0"] == str(tmp_path)  # -m puts the working folder first, as python -m does
    assert info["sid"] == info["pid"] and info["fault"] == "3"
    assert err.read_text() == "to stderr\n"
    proc = server.start(["-m", "warmpkg.job"], out, err)  # the next run: the server's environment again
    assert proc.wait(timeout=30) == 0
    assert json.loads(out.read_text().splitlines()[-1])["fault"] is None
