"""A trainer killed with SIGKILL leaves no engine process and no shared-memory folder behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# Stands in for a trainer: a long-lived child (the engine), a folder (the weights), the reaper.
TRAINER = """
import subprocess, sys, time
from pathlib import Path
from chord.distributed.reaper import start_reaper
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
start_reaper([Path(sys.argv[1])])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_sigkilled_trainer_is_cleaned_up(tmp_path):
    shm = tmp_path / "weights"
    shm.mkdir()
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(shm), str(ROOT)], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(trainer.stdout.readline()))
    time.sleep(0.5)
    assert child.is_running() and shm.is_dir()
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    deadline = time.time() + 15
    while time.time() < deadline and (shm.exists() or (child.is_running() and child.status() != psutil.STATUS_ZOMBIE)):
        time.sleep(0.2)
    assert not shm.exists()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


FILES_TRAINER = """
import mmap, os, subprocess, sys, time
from pathlib import Path
from chord.distributed.reaper import start_reaper
ours, reused = Path(sys.argv[1]) / "ours", Path(sys.argv[1]) / "reused"
for f in (ours, reused):
    f.write_bytes(bytes(4096))
start_reaper([], [str(ours), str(reused)])
# another run (not a child: the reaper would kill it) maps a new file of the same name
reused.unlink()
reused.write_bytes(bytes(4096))
code = "import mmap, sys, time; f = open(sys.argv[1], 'r+b'); m = mmap.mmap(f.fileno(), 0); \
print('mapped', flush=True); time.sleep(600)"
other = subprocess.Popen([sys.executable, "-c", code, str(reused)], stdout=subprocess.PIPE, text=True, \
start_new_session=True)
other.stdout.readline()
print(other.pid, flush=True)
time.sleep(600)
"""


def test_reaper_removes_this_runs_files_not_another_runs(tmp_path):
    """A file of the same name that a live process outside the run maps (a later run on the same port) is kept."""
    trainer = subprocess.Popen([sys.executable, "-c", FILES_TRAINER, str(tmp_path), str(ROOT)], stdout=subprocess.PIPE,
                               text=True)
    other = int(trainer.stdout.readline())
    try:
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait()
        deadline = time.time() + 15
        while time.time() < deadline and (tmp_path / "ours").exists():
            time.sleep(0.2)
        assert not (tmp_path / "ours").exists()
        time.sleep(1.0)
        assert (tmp_path / "reused").exists()
    finally:
        os.kill(other, signal.SIGKILL)


def test_deepspeed_buffers_of_this_run_only(tmp_path, monkeypatch):
    from chord.distributed import shm as shm_cleanup

    monkeypatch.setattr(shm_cleanup, "SHM", tmp_path)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29511")
    uid = os.getuid()
    ours = [tmp_path / f"deepspeed_allreduce_buffer_{uid}_127.0.0.1_29511_{r}" for r in (0, 1)]
    other = tmp_path / f"deepspeed_allreduce_buffer_{uid}_127.0.0.1_29512_0"  # a live run on another port
    for f in (*ours, other):
        f.write_bytes(b"\0" * 16)
    shm_cleanup.remember(2)
    assert set(shm_cleanup.existing()) == {str(f) for f in ours}
    shm_cleanup.remove(0)
    assert not ours[0].exists() and ours[1].exists() and other.exists()  # rank 1 removes its own
    shm_cleanup.remove(1)
    assert not ours[1].exists() and other.exists()


def test_clean_shutdown_removes_this_ranks_deepspeed_buffer(tmp_path, monkeypatch):
    """distributed.shutdown() unlinks the buffer DeepSpeed made for this rank (DeepSpeed never does)."""
    from chord import distributed
    from chord.distributed import shm as shm_cleanup

    monkeypatch.setattr(shm_cleanup, "SHM", tmp_path)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    distributed.init_distributed()
    buf = tmp_path / (f"deepspeed_allreduce_buffer_{os.getuid()}_{os.environ['MASTER_ADDR']}_"
                      f"{os.environ['MASTER_PORT']}_0")
    buf.write_bytes(b"\0" * 16)  # what DeepSpeed's shm_initialize leaves
    distributed.shutdown()
    assert not buf.exists()


def test_trainer_killed_before_the_watcher_is_up_is_still_cleaned_up(tmp_path):
    shm = tmp_path / "weights"
    shm.mkdir()
    code = ("import os, sys; from pathlib import Path; "
            "from chord.distributed.reaper import start_reaper; start_reaper([Path(sys.argv[1])]); "
            "os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code, str(shm), str(ROOT)], timeout=60)
    deadline = time.time() + 15
    while time.time() < deadline and shm.exists():
        time.sleep(0.2)
    assert not shm.exists()
