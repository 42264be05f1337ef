"""Operational faults of a real run: two trainers in one run folder, and a disk that fills during a checkpoint
(docs/usage.md#checkpoints-resume-export). Real processes, real engines; the full disk is a 12 MB tmpfs."""

import json
import os
import subprocess
import time

import pytest

from tests.integration.conftest import ROOT, python, run_cli

pytestmark = pytest.mark.integration


def _args(cache, out, steps, *extra):
    return ["chord/train.py", str(ROOT / "recipes/tiny.yaml"), f"trainer.steps={steps}", f"model.cache_dir={cache}",
            f"run.output_dir={out}", "logging.progress_bar=false", "trainer.prompts_per_step=4",
            "trainer.samples_per_prompt=4", "trainer.expert_per_step=4", "trainer.save_every=1", *extra]


def _steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_second_trainer_in_the_same_folder_is_refused_before_it_writes(tiny_cache, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([python(), *_args(tiny_cache, out, 4)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "pid" not in ((out / ".chord.lock").read_text()
                                                      if (out / ".chord.lock").is_file() else ""):
            time.sleep(0.2)
        t0 = time.time()
        second = run_cli([python(), *_args(tiny_cache, out, 4)], timeout=120)
        refused_in = time.time() - t0
        last = second.stderr.strip().splitlines()[-1]
        assert second.returncode == 2 and f"is in use by trainer pid {first.pid} on host" in last, second.stderr[-2000:]
        assert "prompt data" not in second.stderr and refused_in < 60  # nothing built
        ev = run_cli([python(), "-m", "chord.eval", "tiny", "--out", str(out), "--data", "x=y.jsonl"], timeout=120)
        assert ev.returncode == 2 and f"in use by trainer pid {first.pid}" in ev.stderr, ev.stderr[-2000:]
    finally:
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert _steps(out) == [1, 2, 3, 4]  # one run's rows, each once
    assert len(list((out / "tensorboard").iterdir())) == 1


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return p.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_run_resumes(tiny_cache, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "12m"):
        pytest.skip("this machine does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
    try:
        out = disk / "run"
        p = run_cli([python(), *_args(tiny_cache, out, 6)])
        last = p.stderr.strip().splitlines()[-1]
        assert p.returncode == 1 and last.startswith("chord: no space left on device"), p.stderr[-3000:]
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        latest = (out / "checkpoints" / "latest").read_text().strip()
        assert f"the last complete checkpoint is {out / 'checkpoints' / latest};" in last
        assert "free space and re-run the same command to resume" in last
        assert not list((out / "checkpoints").glob(".tmp-step_*"))  # the half-written save was removed
        assert "warning:" in p.stderr and "trainer.keep_last=3" in p.stderr  # the preflight said so
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)  # space freed
        again = run_cli([python(), *_args(tiny_cache, out, 6)])
        assert again.returncode == 0, again.stderr[-3000:]
        assert _steps(out) == [1, 2, 3, 4, 5, 6]  # every metrics row exactly once
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _bind_read_only(src, path):
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--bind", str(src), str(path)], capture_output=True).returncode:
        return False
    return subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_sigterm_in_start_up_and_in_a_best_export_stop_cleanly_and_a_read_only_cache_serves(tiny_cache, tmp_path):
    ro = tmp_path / "ro-cache"  # the built tiny model and task files, mounted read-only
    if not _bind_read_only(tiny_cache, ro):
        pytest.skip("this machine does not allow a bind mount (no CAP_SYS_ADMIN)")
    try:
        out = tmp_path / "run"
        args = [python(), *_args(ro, out, 2, 'eval.benchmarks=[{name: tiny, source: "builtin:tiny", k: 2, '
                                 'max_problems: 8}]', "eval.every=1")]
        # a SIGTERM while start-up builds (the learner is built, the engine not yet): start-up finishes, then stops
        p = run_cli(args, env={"CHORD_TEST_TERM_IN_START_UP": "learner"})
        assert p.returncode == 0 and "stopped before step 1; nothing to checkpoint" in p.stderr, p.stderr[-3000:]
        assert not (out / "checkpoints").exists() and "Traceback" not in p.stderr
        # a SIGTERM while step 1's evaluation exports best/: the export completes, then step 1 is checkpointed
        p = run_cli(args, env={"CHORD_TEST_TERM_IN_EXPORT": "best"})
        assert p.returncode == 0 and "stopped after step 1; checkpoint saved" in p.stderr, p.stderr[-3000:]
        assert json.loads((out / "best" / "chord_best.json").read_text())["step"] == 1
        assert (out / "best" / "model.safetensors").is_file() and (out / "best" / "tokenizer.json").is_file()
        assert not list(out.glob(".best.*")) and (out / "checkpoints" / "latest").read_text().strip() == "step_1"
        # the same command resumes from step 1 and finishes, reading the read-only cache throughout
        p = run_cli(args)
        assert p.returncode == 0 and "resumed from" in p.stderr, p.stderr[-3000:]
        assert _steps(out) == [1, 2]
        assert [json.loads(x)["step"] for x in (out / "eval.jsonl").read_text().splitlines()] == [1, 2]
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_a_run_folder_moved_while_the_run_goes_stops_it_in_one_line_and_resumes_there(tiny_cache, tmp_path):
    out, moved = tmp_path / "run", tmp_path / "moved"
    run = subprocess.Popen([python(), *_args(tiny_cache, out, 6)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "checkpoints/latest").is_file():
            time.sleep(0.1)
        out.rename(moved)  # mid-run: the run must not go on writing into a folder that is no longer its own
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
    chord = [x for x in err.splitlines() if x.startswith("chord: stopped: the run folder")]
    assert run.returncode == 1 and chord and "deleted or moved" in chord[0], err[-3000:]
    assert "Traceback" not in err and not out.exists()
    p = run_cli([python(), *_args(tiny_cache, moved, 6)], timeout=600)  # its new place resumes it
    assert p.returncode == 0 and "resumed from" in p.stderr, p.stderr[-3000:]
    assert _steps(moved) == list(range(1, 7))
