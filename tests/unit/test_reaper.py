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
sys.path.insert(0, sys.argv[2])
from chord.rollout.reaper import start_reaper
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
