"""The filesystem and signal faults a run meets (docs/usage.md#checkpoints-resume-export): each one is
injected or made real here and the run's pieces must leave nothing wrong behind."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_fs_fault_raises_the_requested_errno_only_at_its_site(monkeypatch):
    from chord import faults

    monkeypatch.setenv("CHORD_TEST_FS_FAULT", "metrics:3:EIO")
    faults.fs_fault("metrics", 2, "m")  # another step: nothing
    faults.fs_fault("eval", 3, "m")  # another site: nothing
    with pytest.raises(OSError) as e:
        faults.fs_fault("metrics", 3, "/x/metrics.jsonl")
    assert e.value.errno == errno.EIO and e.value.filename == "/x/metrics.jsonl"
    monkeypatch.setenv("CHORD_TEST_FS_FAULT", "export:best")
    with pytest.raises(OSError) as e:
        faults.fs_fault("export", "best", "b")
    assert e.value.errno == errno.ENOSPC  # the default: a full disk


def test_a_full_disk_in_the_metrics_log_leaves_a_torn_line_that_resume_drops(tmp_path, monkeypatch, capsys):
    from functools import partial

    from chord import faults
    from chord.checkpoint.store import _truncate_metrics
    from chord.logger import RunLogger

    monkeypatch.setenv("CHORD_TEST_FS_FAULT", "metrics:3")
    log = RunLogger(tmp_path, enabled=True, before_write=partial(faults.fs_fault, "metrics"))
    log.log(1, {"loss": 1.0})
    log.log(2, {"loss": 2.0})
    with pytest.raises(OSError):
        log.log(3, {"loss": 3.0})
    log.close()  # must not raise after the failure
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and not lines[2].endswith("}")  # the torn tail a full disk leaves
    _truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert "dropped 1 torn line" in capsys.readouterr().err


def test_set_aside_logs_never_overwrite_each_other(tmp_path, monkeypatch):
    """Two fresh starts in the same second, or after the wall clock was set back, give the same stamp."""
    from chord.logger import set_aside_old_logs

    monkeypatch.setattr(time, "strftime", lambda *_: "20260101-000000")
    for launch in range(3):
        (tmp_path / "metrics.jsonl").write_text(f'{{"step": 1, "launch": {launch}}}\n')
        set_aside_old_logs(tmp_path)
    kept = sorted(p.name for p in tmp_path.glob("metrics.jsonl.prev-*"))
    assert kept == ["metrics.jsonl.prev-20260101-000000", "metrics.jsonl.prev-20260101-000000-1",
                    "metrics.jsonl.prev-20260101-000000-2"]
    launches = {json.loads((tmp_path / k).read_text())["launch"] for k in kept}
    assert launches == {0, 1, 2}


@pytest.mark.parametrize("how", ["deleted", "moved", "replaced"])
def test_the_lock_sees_its_run_folder_deleted_moved_or_replaced(tmp_path, how):
    from chord.checkpoint.lock import LOCK, RunLock

    run = tmp_path / "run"
    lock = RunLock(run)
    assert not lock.gone()
    if how == "deleted":
        shutil.rmtree(run)
    elif how == "moved":
        run.rename(tmp_path / "elsewhere")
    else:
        run.rename(tmp_path / "elsewhere")
        run.mkdir()
        (run / LOCK).write_text("")  # a new folder at the same path is not the one the run holds
    assert lock.gone()
    assert str(run) in lock.gone_message() and "run.output_dir" in lock.gone_message()
    lock.release()


STOP_SCRIPT = """
import os, signal, sys, time
from chord.checkpoint.store import StopFlag
stop = StopFlag()
os.kill(os.getpid(), signal.SIGINT)
os.kill(os.getpid(), signal.SIGTERM)  # torchrun's Ctrl-C: both at once, one request
time.sleep(0.1)
print("alive", stop.requested, flush=True)
if sys.argv[1] == "second":
    time.sleep(StopFlag.REPEAT_S + 0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("still alive", flush=True)
"""


def test_one_signal_asks_to_stop_and_a_later_second_one_stops_at_once():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    once = subprocess.run([sys.executable, "-c", STOP_SCRIPT, "once"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert once.returncode == 0 and "alive True" in once.stdout
    assert once.stderr.count("received") == 1, once.stderr
    twice = subprocess.run([sys.executable, "-c", STOP_SCRIPT, "second"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert twice.returncode == -signal.SIGTERM and "still alive" not in twice.stdout
    assert "received a second SIGTERM: stopping now" in twice.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_a_read_only_cache_dir_is_one_config_error_before_a_build(tmp_path):
    """A built-in model or task that must be built in a read-only model.cache_dir fails at once in one line
    (the model before its warm-up training); a pre-built read-only cache is read (tests/integration)."""
    from chord.config import ChordConfig, ConfigError
    from chord.config.cache_dir import cache_writes
    from chord.models.load import resolve_model_path
    from chord.tasks import builtin_source

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
    try:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError) as e:
            resolve_model_path("tiny", ro / "cache")
        assert time.perf_counter() - t0 < 5, "the cache must be probed before the model is trained"
        msg = str(e.value)
        assert msg.startswith(f"model.cache_dir '{ro / 'cache'}' cannot be written (read-only file system)")
        assert "the built-in model 'tiny'" in msg and "\n" not in msg
        cfg = ChordConfig()
        cfg.model.cache_dir = str(ro)
        with pytest.raises(ConfigError, match=r"read-only file system\): the built-in data 'builtin:tiny'"):
            builtin_source(cfg, "builtin:tiny", "rl")
        with pytest.raises(FileNotFoundError), cache_writes(ro, "x"):  # not a refused write: unchanged
            (ro / "missing").read_text()
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
