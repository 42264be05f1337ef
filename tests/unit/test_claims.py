"""chord.analysis.claims on tiny run folders written here: values computed by hand."""

import json
from pathlib import Path

import pytest

from chord.analysis.claims import area_under_curve, diversity_gap, entropy_end, mean_or_none, style_stats, val_selected
from chord.analysis.runs import load_run

pytestmark = pytest.mark.unit


def write_jsonl(path: Path, objs: list[dict], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(o) + "\n" for o in objs) + extra)


def make_run(folder: Path, rows: list[dict], evals: list[dict]):
    write_jsonl(folder / "metrics.jsonl", rows)
    write_jsonl(folder / "eval.jsonl", evals)
    return load_run(folder)


EVALS = [
    {"step": 0, "val/avg@4": 0.9, "id/avg@4": 0.2, "id/pass@4": 0.5},  # untrained: never selected by default
    {"step": 10, "val/avg@4": 0.5, "id/avg@4": 0.4, "id/pass@4": 0.75},
    {"step": 20, "val/avg@4": 0.7, "id/avg@4": 0.6, "id/pass@4": 0.625},
    {"step": 30, "val/avg@4": 0.7, "id/avg@4": 0.8},  # ties step 20 on val; no pass@4 logged
    {"step": 40, "val/avg@4": 0.6, "id/avg@4": 0.3, "id/pass@4": 0.3},
]


def test_val_selected_picks_the_earliest_best_trained_step(tmp_path):
    run = make_run(tmp_path, [{"step": 40, "loss": 1.0}], EVALS)
    assert val_selected(run, "val/avg@4", ["id/avg@4", "id/pass@4", "ood/avg@4"]) == {
        "step": 20, "id/avg@4": 0.6, "id/pass@4": 0.625, "ood/avg@4": None}
    assert val_selected(run, "val/avg@4", ["id/avg@4"], min_step=0) == {"step": 0, "id/avg@4": 0.2}
    assert val_selected(run, "val/avg@4", [], min_step=25) == {"step": 30}
    assert val_selected(run, "val/avg@4", ["id/avg@4"], min_step=41) is None
    assert val_selected(run, "no/such", ["id/avg@4"]) is None


def test_area_under_curve_is_the_trapezoidal_mean(tmp_path):
    run = make_run(tmp_path, [{"step": 40, "loss": 1.0}], EVALS)
    # steps 10..40, values .4 .6 .8 .3: 10 * .5 + 10 * .7 + 10 * .55 = 17.5 over 30 steps
    assert area_under_curve(run, "id/avg@4") == pytest.approx(17.5 / 30)
    # with step 0 (.2): + 10 * .3 = 20.5 over 40 steps
    assert area_under_curve(run, "id/avg@4", min_step=0) == pytest.approx(20.5 / 40)
    # pass@4 has no step 30: 10..40 is 10 * .6875 + 20 * .4625 = 16.125 over 30
    assert area_under_curve(run, "id/pass@4") == pytest.approx(16.125 / 30)
    assert area_under_curve(run, "id/avg@4", min_step=40) == pytest.approx(0.3)
    assert area_under_curve(run, "id/avg@4", min_step=41) is None
    assert area_under_curve(run, "no/such") is None


def test_area_under_curve_over_a_stage_boundary(tmp_path):
    write_jsonl(tmp_path / "stage1-sft" / "metrics.jsonl", [{"step": 10, "loss": 1.0}])
    write_jsonl(tmp_path / "stage1-sft" / "eval.jsonl", [{"step": 0, "id/avg@4": 0.5}, {"step": 10, "id/avg@4": 0.3}])
    write_jsonl(tmp_path / "stage2-rl" / "metrics.jsonl", [{"step": 20, "loss": 1.0}])
    write_jsonl(tmp_path / "stage2-rl" / "eval.jsonl", [{"step": 0, "id/avg@4": 0.1}, {"step": 20, "id/avg@4": 0.9}])
    run = load_run(tmp_path)
    # 0..10 on stage 1's curve (.5 -> .3), 10..30 on stage 2's (.1 -> .9): (4 + 10) / 30
    assert area_under_curve(run, "id/avg@4", min_step=0) == pytest.approx(14 / 30)
    assert area_under_curve(run, "id/avg@4", min_step=10) == pytest.approx((0 + 10) / 20)
    assert area_under_curve(run, "id/avg@4", min_step=30) == pytest.approx(0.9)
    # two points, both at step 10: their mean
    write_jsonl(tmp_path / "stage2-rl" / "eval.jsonl", [{"step": 0, "id/avg@4": 0.1}])
    assert area_under_curve(load_run(tmp_path), "id/avg@4") == pytest.approx(0.2)


def test_entropy_end_leaves_out_steps_without_rollout_tokens(tmp_path):
    rows = [{"step": s, "entropy/rollout": e, "tokens/rollout": 0.0 if s == 6 else 100.0}
            for s, e in [(1, 2.0), (2, 1.5), (3, 1.0), (4, 0.8), (5, 0.6), (6, 0.0), (7, 0.4)]]
    run = make_run(tmp_path, rows, [])
    assert entropy_end(run, last=3) == pytest.approx((0.8 + 0.6 + 0.4) / 3)
    assert entropy_end(run) == pytest.approx((1.5 + 1.0 + 0.8 + 0.6 + 0.4) / 5)
    assert entropy_end(run, last=100) == pytest.approx(6.3 / 6)
    assert entropy_end(run, key="entropy/expert") is None
    with pytest.raises(ValueError, match="last must be >= 1"):
        entropy_end(run, last=0)


def test_diversity_gap_per_step_that_logged_both(tmp_path):
    run = make_run(tmp_path, [{"step": 40, "loss": 1.0}], EVALS)
    gap = diversity_gap(run, "id", 4)
    assert [s for s, _ in gap] == [0, 10, 20, 40]
    assert [g for _, g in gap] == pytest.approx([0.3, 0.35, 0.025, 0.0])
    assert diversity_gap(run, "ood", 4) == []


def sample(bench: str, problem: int, response: str, correct: bool) -> dict:
    return {"benchmark": bench, "problem": problem, "sample": 0, "prompt": "p", "answer": "21",
            "response": response, "correct": correct, "reward": float(correct), "truncated": False, "length": 5}


def test_style_stats_per_benchmark_and_step(tmp_path):
    expert = "Values: 7, 10, 4. 7 + 10 = 17. 17 + 4 = 21.\nAnswer: 21"
    write_jsonl(tmp_path / "eval" / "samples_step_0.jsonl", [
        sample("id", 0, "Answer: 21", True),
        sample("id", 0, "Answer: 20", False),
        sample("id", 1, "  \n" + expert, True),  # leading whitespace is stripped
        sample("id", 1, "Value: 7. Answer: 21", True),  # not the prefix
        sample("ood", 0, "Answer: 3", False),
        sample("ood", 0, "Answer: 4", True),
        {"benchmark": "id", "problem": 2},  # no response: skipped
    ], extra="{not json\n")
    write_jsonl(tmp_path / "eval" / "samples_step_10.jsonl", [
        sample("id", 0, expert, True), sample("id", 0, expert.replace("21", "22"), False),
    ])
    write_jsonl(tmp_path / "eval" / "samples_step_x.jsonl", [sample("id", 0, expert, True)])  # not a step: ignored
    stats = style_stats(tmp_path)
    assert stats == {
        ("id", 0): {"n": 4, "n_expert": 1, "expert_share": 0.25, "acc_expert": 1.0, "acc_other": 2 / 3},
        ("ood", 0): {"n": 2, "n_expert": 0, "expert_share": 0.0, "acc_expert": None, "acc_other": 0.5},
        ("id", 10): {"n": 2, "n_expert": 2, "expert_share": 1.0, "acc_expert": 0.5, "acc_other": None},
    }
    assert style_stats(tmp_path, expert_prefix="Answer:")[("id", 0)]["n_expert"] == 2
    assert style_stats(tmp_path / "missing") == {}


def test_mean_or_none():
    assert mean_or_none([]) is None
    assert mean_or_none([1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
