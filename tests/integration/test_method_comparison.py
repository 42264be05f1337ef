"""The CI-size method comparison (benchmarks/method_comparison.py --quick): five real chord runs (vLLM,
DeepSpeed) on a quickly built card-sum base model; the table and plots come from those runs' files."""

import json
import sys
import time

import pytest

from chord.step_metrics import NOT_REPRODUCIBLE
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One quick base model for both tests (built by the first: ~25 s)."""
    return tmp_path_factory.mktemp("cache")


def test_quick_grid_produces_table_plots_and_phases_from_real_runs(tmp_path, cache):
    runs, out = tmp_path / "runs", tmp_path / "out"
    t0 = time.perf_counter()
    r = run_cli([sys.executable, "benchmarks/method_comparison.py", "--quick", "--runs", str(runs), "--out", str(out),
                 "--cache-dir", str(cache)], timeout=600)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    md = (out / "results.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert {x["method"] for x in res} == {"SFT", "GRPO", "SFT-then-RL", "CHORD-mu", "CHORD-phi"}
    for x in res:  # every number in the report is the run's own last evaluation
        d = runs / x["method"] / "seed0"
        evals = [json.loads(line) for line in (d / "eval.jsonl").read_text().splitlines()]
        for split in ("val", "id", "ood"):
            assert x[split]["final"] == pytest.approx(evals[-1][f"{split}/avg@2"])
        assert x["final_eval"]["step"] == 6  # an SFT-then-RL arm's own steps are offset by its SFT start
        assert x["tokens"] > 0 and x["wall_s"] > 0
        assert f"| {x['method']} | 1 | " in md
    arm = runs / "SFT-then-RL/seed0"  # GRPO from the SFT run's exported validation-best checkpoint, no stages
    assert (arm / "sft_init/config.json").is_file() and not list(arm.glob("stage*"))
    init = json.loads((arm / "init.json").read_text())
    assert init["sft_step"] in (1, 2, 3) and init == next(x for x in res if x["method"] == "SFT-then-RL")["sft_start"]
    header = next(line for line in md.splitlines() if line.startswith("| method | seeds |"))
    assert "| val-selected ID |" in header and "| AUC ID |" in header and "best" not in header
    assert "oracle_best_test_selected_optimistic" in res[0]["id"]
    assert "## Phases per run" in md and "SFT/seed0 | ID |" in md  # SFT runs get phase rows, GRPO none
    assert "GRPO/seed0 |" not in md.split("## Phases per run")[1]
    for png in ("eval_val.png", "eval_id.png", "eval_ood.png", "train_reward.png", "train_entropy.png"):
        assert (out / png).stat().st_size > 5000
    assert wall < 180, f"the CI grid took {wall:.0f} s"  # measured 101 s warm (25 s base build);
                                                         # 153 s + build --no-warm
    # a rerun skips every finished run: only the report is rebuilt
    t1 = time.perf_counter()
    assert run_cli([sys.executable, "benchmarks/method_comparison.py", "--quick", "--runs", str(runs), "--out",
                    str(out), "--cache-dir", str(cache)], timeout=300).returncode == 0
    assert time.perf_counter() - t1 < 60
    assert json.loads((out / "results.json").read_text()) == res


def _numbers(run_dir):
    """Every logged number of a run but its timings: what a launch method must not change."""
    rows = [{k: v for k, v in json.loads(line).items() if not k.startswith(NOT_REPRODUCIBLE)}
            for name in ("metrics.jsonl", "eval.jsonl") for line in (run_dir / name).read_text().splitlines()]
    return json.loads(json.dumps(rows).replace("NaN", "null"))  # NaN != NaN; null == null


def test_a_warm_launched_run_computes_what_a_fresh_process_computes(tmp_path, cache):
    """chord.distributed.warm_launch forks runs from a server that imported the stack: CHORD-phi (vLLM
    rollouts, expert data, DeepSpeed) must log the same numbers as the same run started as a fresh process."""
    out = {}
    for mode in ("warm", "fresh"):
        runs = tmp_path / mode
        r = run_cli([sys.executable, "benchmarks/method_comparison.py", "--quick", "--methods", "CHORD-phi", "--steps",
                     "4", "--runs", str(runs), "--out", str(tmp_path / f"out-{mode}"), "--cache-dir",
                     str(cache), *(["--no-warm"] if mode == "fresh" else [])], timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        done = json.loads((runs / "CHORD-phi/seed0/benchmark_done.json").read_text())
        assert done["launch"] == ("warm" if mode == "warm" else "subprocess")
        out[mode] = _numbers(runs / "CHORD-phi/seed0")
    # the quick base gets some hands right: rewards differ within groups, so GRPO's gradient is not zero
    assert any(row.get("loss/grpo") for row in out["warm"]) and any(row.get("loss/sft") for row in out["warm"])
    assert out["warm"] == out["fresh"]
