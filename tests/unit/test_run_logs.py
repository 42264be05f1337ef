"""Nothing a user already has is lost: fresh starts keep old logs, chord.eval never overwrites a run's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_fresh_start_keeps_an_earlier_launchs_logs(tmp_path, capsys):
    from chord.logger import RunLogger, set_aside_old_logs

    old = "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2))
    (tmp_path / "metrics.jsonl").write_text(old)
    (tmp_path / "eval.jsonl").write_text('{"step": 0}\n')
    set_aside_old_logs(tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 2 and all(".prev-" in k for k in kept)
    assert (tmp_path / next(k for k in kept if k.startswith("metrics"))).read_text() == old
    assert "starting at step 0; the earlier metrics.jsonl" in capsys.readouterr().err
    log = RunLogger(tmp_path, enabled=True)
    log.log(1, {"loss": 0.5})
    log.close()
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


def test_metrics_row_is_written_before_the_checkpoint():
    """A kill during or right after a save must not lose that step's row (the resume starts after it)."""
    src = (ROOT / "chord/train.py").read_text()
    loop = src[src.index("def train("):src.index("def timed_save(")]
    assert loop.index("run.logger.log(step, m)") < loop.index("timed_save(run, step)")


@pytest.mark.parametrize("marker", ["checkpoints", "config.yaml", "stage1-sft/config.yaml"])
def test_eval_refuses_a_training_runs_folder_as_out(tmp_path, marker):
    run = tmp_path / "run"
    (run / marker).parent.mkdir(parents=True, exist_ok=True)
    (run / marker).mkdir() if marker == "checkpoints" else (run / marker).write_text("x: 1\n")
    (run / "eval.jsonl").write_text('{"step": 10, "overall/avg": 0.5}\n')
    p = subprocess.run([sys.executable, "-m", "chord.eval", str(run), "--data", "x=nope.jsonl", "--out", str(run)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith(f"chord.eval: ConfigError: --out {run} "
                                                        "is a training run's folder")
    assert (run / "eval.jsonl").read_text() == '{"step": 10, "overall/avg": 0.5}\n'
