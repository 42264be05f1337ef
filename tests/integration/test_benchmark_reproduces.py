"""A fresh checkout reproduces a committed run of the benchmark grid (docs/benchmark.md#reproducing-a-result):
the first steps of its GRPO seed-0 run, from the shipped math-setting base (the sha256 the grid recorded) with the
grid's own arguments, give the recorded metrics and evaluations exactly."""

import json
import sys
from pathlib import Path

import pytest

from chord.models.cards import SHIPPED, weights_sha256
from chord.step_metrics import NOT_REPRODUCIBLE
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
REFERENCES = sorted(ROOT.glob("benchmarks/results/method_comparison_math_*/reference/run.json"))
STEPS = 5  # the grid's first evaluation after step 0


def _rows(path: Path, steps: set[int]) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keep = [{k: v for k, v in r.items() if not k.startswith(NOT_REPRODUCIBLE)} for r in rows if r["step"] in steps]
    return json.loads(json.dumps(keep).replace("NaN", "null"))  # NaN != NaN; null == null


def test_a_fresh_checkout_reproduces_the_recorded_grid_run(tmp_path):
    assert REFERENCES, "no committed grid reference (benchmarks/results/method_comparison_math_*/reference)"
    ref_file = REFERENCES[-1]
    ref = json.loads(ref_file.read_text())
    base = SHIPPED / ref["base_folder"]
    assert weights_sha256(base) == ref["base_sha256"]  # the same weights the grid ran from
    out = tmp_path / "run"
    args = [a for a in ref["args"] if not a.startswith(("model.path=", "model.cache_dir=", "trainer.steps="))]
    r = run_cli([sys.executable, "chord/train.py", *args, f"run.output_dir={out}", f"model.path={base}",
                 f"model.cache_dir={tmp_path / 'cache'}", f"trainer.steps={STEPS}"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = set(range(1, STEPS + 1))
    assert _rows(out / "metrics.jsonl", steps) == _rows(ref_file.parent / "metrics.jsonl", steps)
    assert _rows(out / "eval.jsonl", {0, STEPS}) == _rows(ref_file.parent / "eval.jsonl", {0, STEPS})
