"""curves.png and the summary line every finished run ends with (chord.analysis.curves)."""

import json

import pytest

from chord.analysis.curves import accuracy_keys, summary, write_curves
from chord.analysis.runs import load_run

pytestmark = pytest.mark.unit


def _write(folder, metrics, evals):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))


def test_summary_names_first_and_last_accuracy_of_each_benchmark(tmp_path):
    run = tmp_path / "run"
    _write(run, [{"step": s, "reward/mean": 0.1 * s, "mu": 0.1, "entropy/rollout": 1.0 / s, "tokens/rollout": 9}
                 for s in (1, 2, 3)],
           [{"step": 0, "id/avg@4": 0.312, "ood/avg@4": 0.281, "overall/avg": 0.3},
            {"step": 3, "id/avg@4": 0.584, "ood/avg@4": 0.349, "overall/avg": 0.5}])
    assert accuracy_keys(load_run(run)) == ["id/avg@4", "ood/avg@4"]  # overall/ is not a benchmark
    assert summary(run) == (f"held-out accuracy (avg@4): id 31% -> 58%, ood 28% -> 35%; curves: {run}/curves.png; "
                            f"TensorBoard: tensorboard --logdir {run}")
    assert summary(run, tensorboard=False).endswith(f"curves: {run}/curves.png")
    out = write_curves(run)
    assert out == run / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_a_run_without_evaluation_still_gets_curves_and_says_where(tmp_path):
    run = tmp_path / "run"
    _write(run, [{"step": 1, "reward/mean": 0.2, "mu": 0.1}], [])
    assert summary(run) == f"curves: {run}/curves.png; TensorBoard: tensorboard --logdir {run}"
    assert write_curves(run).is_file()


def test_a_staged_run_is_one_timeline(tmp_path):
    run = tmp_path / "staged"
    _write(run / "stage1-sft", [{"step": s, "mu": 1.0} for s in (1, 2)], [{"step": 0, "id/avg@2": 0.1},
                                                                       {"step": 2, "id/avg@2": 0.4}])
    _write(run / "stage2-rl", [{"step": s, "mu": 0.0, "reward/mean": 0.5} for s in (1, 2)],
           [{"step": 0, "id/avg@2": 0.4}, {"step": 2, "id/avg@2": 0.65}])
    assert summary(run).startswith("held-out accuracy (avg@2): id 10% -> 65%; ")
    assert write_curves(run).is_file()
