"""One run folder, one writer (chord.checkpoint.lock) and filesystem failures said in one line
(chord.checkpoint.disk): unit level, with real processes for the lock."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from chord.checkpoint.disk import failure_message, filesystem_failure, space_warning
from chord.checkpoint.lock import LOCK, RunFolderInUse, RunLock, holder

pytestmark = pytest.mark.unit

def _holder_process(folder):
    code = ("import sys, time\nfrom chord.checkpoint.lock import RunLock\nlock = RunLock(sys.argv[1])\n"
            "print('held', flush=True)\ntime.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    p = _holder_process(tmp_path / "run")
    try:
        with pytest.raises(RunFolderInUse, match=f"in use by trainer pid {p.pid} on host ") as e:
            RunLock(tmp_path / "run")
        assert "\n" not in str(e.value)
        assert holder(tmp_path / "run").startswith(f"trainer pid {p.pid}")
    finally:
        p.kill()
        p.wait()


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    p = _holder_process(tmp_path / "run")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (tmp_path / "run" / LOCK).is_file() and holder(tmp_path / "run") is None  # the file stays, the lock not
    lock = RunLock(tmp_path / "run")  # a clean start
    assert f"pid {os.getpid()}" in (tmp_path / "run" / LOCK).read_text()
    lock.release()


def test_release_and_retake_in_one_process(tmp_path):
    a = RunLock(tmp_path)
    with pytest.raises(RunFolderInUse):
        RunLock(tmp_path)  # flock is per open file: a second open in the same process is refused too
    a.release()
    RunLock(tmp_path).release()


def test_filesystem_failures_are_recognised():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/.tmp-step_3/mp_rank_00.pt")
    assert filesystem_failure(full) == ("no space left on device", full.filename)
    for code, what in [(errno.EDQUOT, "disk quota exceeded"), (errno.EROFS, "read-only filesystem"),
                       (errno.EIO, "input/output error"), (errno.EACCES, "permission denied")]:
        assert filesystem_failure(OSError(code, "x"))[0] == what
    try:  # torch.save's zip writer hides the errno in a RuntimeError, sometimes chained
        try:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4800 vs 4796")
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as e:
        assert filesystem_failure(e) == ("a write failed (torch.save)", None)
    class SafetensorError(Exception):  # safetensors' Rust writer keeps only the OS error's text
        pass

    storage_full = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                   '"No space left on device" })')
    assert filesystem_failure(storage_full) == ("no space left on device", None)
    assert filesystem_failure(OSError(errno.ENOENT, "gone")) is None
    assert filesystem_failure(RuntimeError("CUDA out of memory")) is None


def test_the_message_names_the_path_the_last_checkpoint_and_the_fix(tmp_path):
    e = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoints/.tmp-step_3/x.pt"))
    msg = failure_message(e, tmp_path, tmp_path / "checkpoints/step_2")
    assert msg == (f"no space left on device writing {tmp_path}/checkpoints/.tmp-step_3/x.pt; the last complete "
                   f"checkpoint is {tmp_path}/checkpoints/step_2; free space and re-run the same command to resume")
    ro = failure_message(OSError(errno.EROFS, "Read-only file system", "/x/metrics.jsonl"), tmp_path, None)
    assert ro.startswith("read-only filesystem writing /x/metrics.jsonl; no checkpoint is complete yet; fix the")
    assert failure_message(KeyError("x"), tmp_path, None) is None


def test_space_warning_before_the_first_save(tmp_path):
    assert space_warning(tmp_path, parameters=1000, keep_last=3) is None  # 48 kB: any disk holds it
    warning = space_warning(tmp_path, parameters=10**15, keep_last=3)
    assert warning.startswith(f"warning: {tmp_path} has ") and "trainer.keep_last=3" in warning
