"""benchmarks/lr_sweep.py with the fake trainer (tests/unit/fake_trainer.py): the runs it makes, validation only,
the rate chosen per method on the mean of the last two validation evaluations, and the calibration's criteria."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import lr_sweep
from benchmarks import method_comparison as mc
from chord.models.cards import build_cards_model
from tests.unit.fake_trainer import val_acc
from tests.unit.test_method_comparison import calls, overrides, use_fake

pytestmark = pytest.mark.unit
DEFAULT_BASE = build_cards_model("unused-cache")  # the shipped default base (`model.path: cards`): no build
ROOT = Path(__file__).resolve().parents[2]
LRS = [1e-4, 3e-4, 1e-3]


def test_readapt_step_and_score_on_hand_made_curves():
    assert lr_sweep.readapt_step({0: .3, 5: .2, 10: .25, 20: .31}) == 20
    assert lr_sweep.readapt_step({0: .3, 5: .1, 10: .3}) == 10  # back at step 0's value counts
    assert lr_sweep.readapt_step({0: .3, 5: .2, 10: .35, 20: .1, 30: .3}) == 30  # after the lowest point
    assert lr_sweep.readapt_step({0: .3, 5: .35, 10: .4}) == 5  # no dip: the first evaluation
    assert lr_sweep.readapt_step({0: .3, 5: .2, 10: .25}) is None  # never back
    assert lr_sweep.readapt_step({0: .3}) is None
    assert lr_sweep.score({0: .1, 40: .5, 60: .3}) == pytest.approx(.4)  # the last two, whatever came before
    assert lr_sweep.score({60: .2}) == pytest.approx(.2)


def test_sweep_chooses_each_rate_on_validation_alone(tmp_path, monkeypatch):
    args = use_fake(tmp_path, monkeypatch)
    out = tmp_path / "out"
    assert lr_sweep.main(["--steps", "60", "--k", "2", "--eval-problems", "16", "--runs", str(tmp_path / "runs"),
                          "--out", str(out), *args]) == 0
    runs = [overrides(c) for c in calls(tmp_path)]
    assert len(runs) == 13  # 4 methods x 3 rates, then CHORD-mu's other window at its chosen rate
    made = sorted((Path(kv["run.output_dir"]).parts[-3], float(kv["trainer.lr"]),
                   int(kv.get("algorithm.mu.decay_steps", 0))) for kv in runs)
    assert made == sorted([(m, lr, 30 if m == "CHORD-mu" else 0) for m in lr_sweep.SWEPT for lr in LRS]
                          + [("CHORD-mu", 3e-4, 60)])
    for kv in runs:  # the tuning seed, the full budget, and no test split
        assert (kv["run.seed"], kv["trainer.steps"]) == (str(mc.TUNING_SEED), "60")
        assert [b["name"] for b in json.loads(kv["eval.benchmarks"])] == ["val"]
        rows = [json.loads(x) for x in (Path(kv["run.output_dir"]) / "eval.jsonl").read_text().splitlines()]
        assert rows and all(not k.startswith(("id/", "ood/")) for r in rows for k in r)

    js = json.loads((out / "sweep.json").read_text())
    assert {"chosen", "shared_lr", "precondition", "predicted_grid_s"} <= js.keys()

    def mean_last_two(m: str, lr: float) -> float:
        return statistics.mean(val_acc(m, s, 60, mc.TUNING_SEED, lr) for s in (40, 60))

    for m in lr_sweep.SWEPT:  # the highest mean of the last two validation evaluations; ties: the smaller rate
        assert js["chosen"][m]["lr"] == max(LRS, key=lambda lr, m=m: (mean_last_two(m, lr), -lr))
        window = "_window30" if m == "CHORD-mu" else ""
        for lr in LRS:
            assert js["scores"][f"{m}@lr{lr:g}{window}"] == pytest.approx(mean_last_two(m, lr))
    # by hand from the fake's gains: SFT's best single evaluation is at 3e-4, CHORD-mu's last one at 1e-3,
    # CHORD-phi ties 1e-4 and 3e-4
    assert js["chosen"] == {"SFT": {"lr": 1e-3}, "GRPO": {"lr": 3e-4}, "CHORD-phi": {"lr": 1e-4},
                            "CHORD-mu": {"lr": 3e-4, "decay_steps": 30}}  # the windows tie: the shorter
    assert js["shared_lr"] == 3e-4  # mean ranks 2.25, 1.5, 2.25
    # SFT at CHORD-mu's rate dips at 5-10 and is back above the base at 20 <= 0.8 x 30
    assert {k: js["precondition"][k] for k in ("met", "t_readapt", "window", "lr")} == {
        "met": True, "t_readapt": 20, "window": 30, "lr": 3e-4}
    wall = {key: json.loads((tmp_path / "runs" / m / tag / "seed100" / mc.DONE).read_text())["wall_s"]
            for key, m, tag in [("SFT", "SFT", "lr0.001"), ("GRPO", "GRPO", "lr0.0003"),
                                ("CHORD-phi", "CHORD-phi", "lr0.0001"), ("CHORD-mu", "CHORD-mu", "lr0.0003_window30")]}
    assert js["predicted_grid_s"] == pytest.approx(3 * (sum(wall.values()) + 0.75 * wall["GRPO"]))
    md = (out / "sweep.md").read_text()
    assert "| CHORD-mu (window 30) | 51.7 | 71.7 | 59.2 | 0.0003 |" in md
    assert "## One learning rate for all: 0.0003" in md and "the precondition (<= 0.8 x window = 24) is met" in md


def test_calibration_picks_the_smallest_share_meeting_the_criteria(tmp_path, monkeypatch):
    args = use_fake(tmp_path, monkeypatch)
    flat = tmp_path / "flat-base"  # the shipped weights under a name the fake reads as "never dips"
    flat.symlink_to(DEFAULT_BASE, target_is_directory=True)
    monkeypatch.setattr(mc, "base_model", lambda a: str(flat) if a.worked == 0.1 else "cards")
    out = tmp_path / "out"
    assert lr_sweep.main(["--calibrate", "0.2", "0.1", "--steps", "60", "--k", "2", "--eval-problems", "16",
                          "--runs", str(tmp_path / "runs"), "--out", str(out), *args]) == 0
    runs = [overrides(c) for c in calls(tmp_path)]
    assert [kv["model.path"] for kv in runs] == [str(flat), "cards"]  # the smaller share first
    for kv in runs:  # SFT at the calibration rate for N/2 steps, validation only
        assert (kv["trainer.steps"], kv["trainer.lr"]) == ("30", str(lr_sweep.CALIBRATION_LR))
        assert [b["name"] for b in json.loads(kv["eval.benchmarks"])] == ["val"]
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["chosen"] == 0.2
    no, yes = cal["rows"]
    curve = {s: val_acc("SFT", s, 30, mc.TUNING_SEED, lr_sweep.CALIBRATION_LR) for s in (0, 5, 10, 20, 30)}
    assert yes["curve"] == {str(s): pytest.approx(v) for s, v in curve.items()}
    # (a) the lowest at steps 1-10 less step 0, (b) step 30 less step 0, (c) the base's answers at step 0 terse
    assert (yes["dip"], yes["up"], yes["terse"]) == (pytest.approx(curve[10] - curve[0]),
                                                     pytest.approx(curve[30] - curve[0]), 1.0)
    assert yes["criteria"] == {"dip": True, "above": True, "terse": True} and yes["met"]
    assert (no["worked"], no["dip"], no["up"]) == (0.1, 0.0, 0.0)
    assert no["criteria"] == {"dip": False, "above": False, "terse": True} and not no["met"]
    assert no["base_sha256"] == yes["base_sha256"]  # the same weights under two names
    md = (out / "calibration.md").read_text()
    assert "| 0.2 | 0: 30.0, 5: 20.0, 10: 20.0, 20: 40.0, 30: 40.0 | -10.0 | +10.0 | 100.0% | yes | yes | yes |" in md
    assert "Chosen: 0.2." in md


def test_script_help_runs():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/lr_sweep.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--calibrate" in r.stdout
