"""benchmarks/method_comparison.py's orchestration with a fake trainer (tests/unit/fake_trainer.py): the grid, equal
budgets, SFT-then-RL from SFT's validation-best checkpoint, resume after a failure, the swept learning rates, and a
report built from the run folders' numbers (the real runs: tests/integration)."""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import method_comparison as mc
from chord.models.cards import build_cards_model
from tests.unit.fake_trainer import id_acc, val_acc

pytestmark = pytest.mark.unit
DEFAULT_BASE = build_cards_model("unused-cache")  # the shipped default base (`model.path: cards`): no build
ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_trainer.py")
N = 60  # steps of every grid here: evaluations at 5, 10, 20, 40, 60; SFT-then-RL start candidates 5, 10, 20, 30
SFT_EVALS = [0, 5, 10, 20, 30, 40, 60]  # SFT is also evaluated at step 30 (N/2, a start candidate)
EVALS = [0, 5, 10, 20, 40, 60]
K_SFT = 20  # the fake SFT's validation-best candidate: 20 and 30 tie (+0.1 over the base), the earlier wins


def fake_export(server, ckpt: Path, out: Path, log: Path) -> None:
    """chord.export's stand-in: the checkpoint folder copied, with a config.json naming where it came from."""
    if not ckpt.is_dir():
        raise SystemExit(f"method_comparison: {ckpt} is missing")
    shutil.copytree(ckpt, out)
    (out / "config.json").write_text(json.dumps({"exported_from": str(ckpt)}))


def use_fake(tmp_path: Path, monkeypatch, fail: bool = False, swap: bool = False) -> list[str]:
    """The fake trainer and export, the shipped base; the arguments both drivers take for them."""
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    for var, on in (("FAKE_FAIL", fail), ("FAKE_SWAP", swap)):
        if on:
            monkeypatch.setenv(var, "1")
        else:
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mc, "base_model", lambda a: "cards")  # base_weights then hashes the shipped base
    monkeypatch.setattr(mc, "export_checkpoint", fake_export)
    monkeypatch.setattr(mc, "POLL_S", 0.05)
    return ["--python", sys.executable, "--fake-trainer", str(FAKE), "--cache-dir", str(tmp_path / "cache")]


def calls(tmp_path: Path) -> list[list[str]]:
    f = tmp_path / "calls.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.is_file() else []


def overrides(call: list[str]) -> dict[str, str]:
    """The last value of each key=value (what chord/train.py applies)."""
    return dict(x.split("=", 1) for x in call if "=" in x)


def _grid(tmp_path, monkeypatch, fail=False, swap=False, k="2", seeds="2", extra=()):
    args = use_fake(tmp_path, monkeypatch, fail=fail, swap=swap)
    return mc.main(["--seeds", seeds, "--steps", str(N), "--k", k, "--eval-problems", "16", "--sweep", "none",
                    "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *args, *extra])


def curves(method: str, seed: int) -> dict[str, dict[int, float]]:
    """{split: {step: value}} as the report must see the run: an SFT-then-RL arm is the SFT run up to K_SFT, then
    its own evaluations at K_SFT + its steps (it runs N - K_SFT steps, evaluated at its end and at 40 - K_SFT)."""
    def of(m: str, steps: list[int], n: int, offset: int = 0) -> dict[str, dict[int, float]]:
        return {"val": {offset + s: val_acc(m, s, n, seed) for s in steps},
                "id": {offset + s: id_acc(m, s, n, seed) for s in steps}}

    if method == "SFT":
        return of("SFT", SFT_EVALS, N)
    if method != "SFT-then-RL":
        return of(method, EVALS, N)
    sft, own = of("SFT", [s for s in SFT_EVALS if s <= K_SFT], N), of(method, [40 - K_SFT, N - K_SFT], N - K_SFT, K_SFT)
    return {split: sft[split] | own[split] for split in sft}


def test_evaluation_steps_and_sft_start_candidates():
    assert mc.eval_points(60) == [5, 10, 20, 40, 60]
    assert mc.sft_candidates(60) == [5, 10, 20, 30]
    assert mc.eval_points(6) == [1, 2, 4, 6] and mc.sft_candidates(6) == [1, 2, 3]


def test_sft_start_is_the_validation_best_candidate_never_step_0(tmp_path):
    d = tmp_path / "runs/SFT/seed0"
    d.mkdir(parents=True)
    vals = {0: 0.9, 5: 0.3, 10: 0.5, 20: 0.5, 30: 0.4, 40: 0.8, 60: 0.7}  # 0 and 40: no candidates
    d.joinpath("eval.jsonl").write_text("".join(json.dumps({"step": s, "val/avg@2": v}) + "\n"
                                                for s, v in vals.items()))
    a = argparse.Namespace(runs=tmp_path / "runs", k=2, steps=60)
    assert mc.sft_start(a, "SFT-then-RL", 0) == {"sft_step": 10, "val": 0.5,  # ties 20: the earlier
                                                 "candidates": {"5": 0.3, "10": 0.5, "20": 0.5, "30": 0.4}}
    # SFT-light: the candidate nearest one epoch of expert rows (300 rows / 24 per step = 12.5 steps) from below
    assert mc.sft_start(a, "SFT-light-then-RL", 0)["sft_step"] == 10
    a.k = 4
    with pytest.raises(SystemExit, match=r"no validation evaluation at steps \[5, 10, 20, 30\]"):
        mc.sft_start(a, "SFT-then-RL", 0)


def test_grid_resumes_after_a_failed_run_and_reports_every_run(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="CHORD-mu/seed0 failed \\(exit 3\\): boom: a crash"):
        _grid(tmp_path, monkeypatch, fail=True)
    first = calls(tmp_path)
    assert len(first) == 4  # SFT, GRPO, SFT-then-RL finished; CHORD-mu failed
    assert _grid(tmp_path, monkeypatch) == 0
    again = calls(tmp_path)[4:]
    assert len(again) == 2 * 5 - 3  # the three finished runs were skipped
    runs = tmp_path / "runs"
    for c in first + again:
        kv = overrides(c)
        if "SFT-then-RL" in kv["run.output_dir"]:  # the budget less SFT's steps, from SFT's exported checkpoint
            assert (kv["trainer.steps"], kv["eval.at_start"]) == (str(N - K_SFT), "false")
            # its evaluations land on the grid's: K_SFT + 20 = 40, and its end K_SFT + 40 = 60
            assert json.loads(kv["eval.at_steps"]) == [40 - K_SFT]
            assert kv["model.path"] == str(Path(kv["run.output_dir"]) / mc.INIT)
        else:
            assert kv["trainer.steps"] == str(N)
            assert kv["model.path"] == "cards"
        if "/SFT/" in kv["run.output_dir"]:  # every start candidate evaluated and its checkpoint kept
            assert json.loads(kv["eval.at_steps"]) == [5, 10, 20, 30, 40]
            assert (kv["trainer.save_every"], kv["trainer.keep_last"]) == ("5", "12")
        if "CHORD-mu" in kv["run.output_dir"]:
            assert kv["algorithm.mu.decay_steps"] == str(N // 2)
    res = json.loads((tmp_path / "out/results.json").read_text())
    assert len(res) == 10 and {r["method"] for r in res} == set(mc.METHODS)
    for seed in (0, 1):
        arm = runs / f"SFT-then-RL/seed{seed}"
        init = json.loads((arm / "init.json").read_text())
        sft_val = curves("SFT", seed)["val"]
        assert init == {"sft_step": K_SFT, "val": pytest.approx(sft_val[K_SFT]),
                        "candidates": {str(c): pytest.approx(sft_val[c]) for c in (5, 10, 20, 30)}}
        exported = json.loads((arm / mc.INIT / "config.json").read_text())["exported_from"]
        assert exported == str(runs / f"SFT/seed{seed}/checkpoints/step_{K_SFT}")
    for r in res:
        c = curves(r["method"], r["seed"])
        # validation-selected: the test value at the step of the highest validation value (ties: the earlier)
        step = max((s for s in c["val"] if s >= 1), key=lambda s: (c["val"][s], -s))
        assert (r["id"]["selected_step"], r["id"]["selected"]) == (step, pytest.approx(c["id"][step]))
        assert r["id"]["final"] == pytest.approx(c["id"][N]) and r["final_eval"]["step"] == N
        assert r["id"]["oracle_best_test_selected_optimistic"] == pytest.approx(max(c["id"].values()))
        assert r["id"]["start"] == pytest.approx(c["id"][0])  # SFT-then-RL: SFT's step 0
        assert r["sft_start"] == (json.loads((Path(r["dir"]) / "init.json").read_text())
                                  if r["method"] == "SFT-then-RL" else None)
    by = {(r["method"], r["seed"]): r for r in res}
    assert by[("GRPO", 0)]["id"]["selected_step"] == 40 and by[("SFT", 0)]["id"]["selected_step"] == K_SFT
    assert by[("SFT-then-RL", 0)]["id"]["selected_step"] == 40  # its own first evaluation, past SFT's 20
    # AUC: GRPO's ID curve is a straight line over steps 5..60, its trapezoidal mean the value at 32.5
    assert by[("GRPO", 0)]["id"]["auc"] == pytest.approx(id_acc("GRPO", 32.5, N, 0))
    # tokens: SFT-then-RL counts the SFT steps it took over (10 expert tokens each), then its own (100 rollout)
    assert by[("SFT-then-RL", 0)]["tokens"] == K_SFT * 10 + (N - K_SFT) * 100
    assert by[("SFT", 0)]["style_final"]["id"]["expert_share"] == 1.0
    assert by[("SFT-then-RL", 0)]["style_final"]["id"]["expert_share"] == 0.0
    assert [by[("CHORD-mu", s)]["id"]["final"] for s in (0, 1)] == pytest.approx([0.7, 0.71])

    md = (tmp_path / "out/results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method | seeds |"))
    assert "| val-selected ID |" in header and "| AUC ID |" in header and "best" not in header
    assert "| CHORD-mu | 2 | 30.5 ± 6.4 |" in md and "| 70.5 ± 6.4 | 35.2 ± 3.2 |" in md  # final ID, OOD
    assert f"SFT-then-RL/seed0: step {K_SFT} (5: 20.0, 10: 20.0, 20: 40.0, 30: 40.0)" in md
    # the same seeds on both sides: paired over seeds (the fake's seed offset cancels), Welch beside it
    assert ("CHORD-mu beats SFT-then-RL on ID final accuracy (+10.0 points, paired 95% CI [+10.0, +10.0]; "
            "Welch [+7.0, +13.0])") in md
    assert "- [x] SFT dips on validation by >= 5 points at step <= 10: in 2/2 runs" in md
    assert "- [x] SFT is above the base on validation by step 30: in 2/2 runs" in md
    for png in ("eval_val.png", "eval_id.png", "eval_ood.png", "train_reward.png", "train_entropy.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    prov = (tmp_path / "out/provenance.md").read_text()
    assert "commit:" in prov and prov.count("| CHORD-mu/seed") == 2  # every run, with the code it ran
    # the runs' base (model.path=cards: the shipped one), traced to its weights
    shipped = json.loads((DEFAULT_BASE / "chord_build.json").read_text())["weights_sha256"]
    assert f"model.safetensors, sha256 {shipped} (checked: the sha256 its chord_build.json records)" in prov


def test_the_swept_learning_rates_reach_the_runs(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    chosen = {"SFT": {"lr": 1e-3}, "GRPO": {"lr": 3e-4}, "CHORD-phi": {"lr": 1e-4},
              "CHORD-mu": {"lr": 2e-4, "decay_steps": 60}}
    sweep.joinpath("sweep.json").write_text(json.dumps({"seed": 100, "steps": 60, "chosen": chosen, "precondition": {
        "met": True, "text": "SFT is back at the base by step 20."}}))
    assert _grid(tmp_path, monkeypatch, seeds="1", extra=("--sweep", str(sweep))) == 0
    got = {Path(overrides(c)["run.output_dir"]).parent.name: overrides(c) for c in calls(tmp_path)}
    assert {m: kv["trainer.lr"] for m, kv in got.items()} == {
        "SFT": "0.001", "GRPO": "0.0003", "SFT-then-RL": "0.0003", "CHORD-mu": "0.0002", "CHORD-phi": "0.0001"}
    assert got["CHORD-mu"]["algorithm.mu.decay_steps"] == "60"
    md = (tmp_path / "out/results.md").read_text()
    assert f"Learning rates: from the sweep `{sweep}` (seed 100, selected on validation): SFT 0.001" in md
    assert "- [x] CHORD-mu's precondition (benchmarks/lr_sweep.py): SFT is back at the base by step 20." in md


def test_a_run_made_from_other_arguments_or_recipe_is_never_reused(tmp_path, monkeypatch):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text((ROOT / mc.METHODS["SFT"].recipe).read_text())
    for table in (mc.METHODS, mc.ALL_METHODS):
        monkeypatch.setitem(table, "SFT", mc.Method(str(recipe)))
    assert _grid(tmp_path, monkeypatch, seeds="1") == 0
    n = len(calls(tmp_path))
    assert _grid(tmp_path, monkeypatch, seeds="1") == 0  # same arguments: everything is reused
    assert len(calls(tmp_path)) == n
    with pytest.raises(SystemExit, match=r"SFT/seed0 was made differently \(other arguments: .*eval.k was 2, now 3"):
        _grid(tmp_path, monkeypatch, k="3", seeds="1")
    recipe.write_text(recipe.read_text() + "# edited\n")
    with pytest.raises(SystemExit, match=r"SFT/seed0 was made differently \(its recipe changed\)"):
        _grid(tmp_path, monkeypatch, seeds="1")
    assert len(calls(tmp_path)) == n  # nothing ran


def test_other_seeds_are_checked_against_a_previous_grid(tmp_path, monkeypatch):
    assert _grid(tmp_path, monkeypatch) == 0  # seeds 0-1 -> out
    first = tmp_path / "first"
    (tmp_path / "out").rename(first)
    assert _grid(tmp_path, monkeypatch, extra=("--seed-offset", "2", "--compare", str(first))) == 0
    md = (tmp_path / "out/results.md").read_text().split("## Reproduction")[1]
    assert "(seeds 0, 1)" in md and "| CHORD-mu | 72.5 ± 6.4 | 70.5 ± 6.4 |" in md  # here: seeds 2-3
    assert "- ID: the same ranking. Mean here inside the 95% CI there: 5/5 methods." in md
    # CHORD-phi jumps from 4th to 1st
    assert _grid(tmp_path, monkeypatch, swap=True, extra=("--seed-offset", "4", "--runs", str(tmp_path / "runs2"),
                                                          "--compare", str(first))) == 0
    md = (tmp_path / "out/results.md").read_text().split("## Reproduction")[1]
    assert ("- ID: swapped: CHORD-phi vs CHORD-mu (+10.0 here, -30.0 there: **outside the noise in at least one**)"
            in md and "inside the 95% CI there: 4/5 methods (outside: CHORD-phi)." in md)


def test_base_weights_are_hashed_and_a_changed_shipped_base_stops_the_grid(tmp_path):
    shipped = DEFAULT_BASE
    recorded = json.loads((shipped / "chord_build.json").read_text())["weights_sha256"]
    base = mc.base_weights("cards", tmp_path / "cache")  # resolved as chord/train.py resolves model.path
    assert (base["folder"], base["sha256"], base["recorded"]) == (shipped, recorded, True)
    copy = tmp_path / "base"
    shutil.copytree(shipped, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # one bit of one weight
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(SystemExit, match=f"model.safetensors has sha256 [0-9a-f]{{64}}, but chord_build.json "
                                         f"records {recorded}"):
        mc.base_weights(str(copy), tmp_path / "cache")
    info = json.loads((copy / "chord_build.json").read_text())
    del info["weights_sha256"]  # a base built here (a cache folder): hashed, nothing to check it against
    (copy / "chord_build.json").write_text(json.dumps(info))
    base = mc.base_weights(str(copy), tmp_path / "cache")
    assert base["sha256"] == hashlib.sha256(bytes(weights)).hexdigest() != recorded and not base["recorded"]


def test_quick_mode_is_small():
    a = mc.parse_args(["--quick", "--runs", "/tmp/x", "--out", "/tmp/y", "--sweep", "none"])
    assert (a.seeds, a.steps, a.k, a.eval_problems, a.base_steps) == (1, 6, 2, 16, 400)
    with pytest.raises(SystemExit):
        mc.parse_args(["--steps", "3"])  # under 4 steps the evaluation points collide
    with pytest.raises(SystemExit):
        mc.parse_args(["--methods", "GRPO", "SFT-then-RL"])  # SFT-then-RL starts from the SFT runs


def test_script_help_runs():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/method_comparison.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--seeds" in r.stdout


def test_a_sweep_of_another_budget_is_refused_and_never_a_default(tmp_path, monkeypatch):
    """A sweep tuned 60-step runs says nothing about another budget: given, it is one line; found, it is skipped."""
    sweep = tmp_path / "results" / "lr_sweep_math_2026-01-01"
    sweep.mkdir(parents=True)
    sweep.joinpath("sweep.json").write_text(json.dumps({"steps": 60, "chosen": {"SFT": {"lr": 3e-4}}}))
    with pytest.raises(SystemExit, match="tuned 60-step runs, not 6: pass --sweep none"):
        mc.swept(sweep, 6)
    assert mc.swept(sweep, 60) == {"SFT": {"lr": 3e-4}}
    monkeypatch.setattr(mc, "ROOT", tmp_path)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "results").rename(tmp_path / "benchmarks" / "results")
    assert mc.default_sweep(60) == tmp_path / "benchmarks" / "results" / sweep.name
    assert mc.default_sweep(6) is None


def test_the_sft_mulr_arm_measures_chord_mus_precondition_in_the_grids_own_setting(tmp_path, monkeypatch):
    """SFT at CHORD-mu's rate (from the sweep) in this grid's setting: its readapt step against 0.8 x the window;
    a sweep of another setting does not stand in for it."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    chosen = {"SFT": {"lr": 1e-3}, "CHORD-mu": {"lr": 2e-4, "decay_steps": 60}}
    sweep.joinpath("sweep.json").write_text(json.dumps({"setting": "math", "seed": 100, "steps": 60, "chosen": chosen,
                                                        "precondition": {"met": True, "text": "math's own"}}))
    assert _grid(tmp_path, monkeypatch, seeds="1", extra=("--sweep", str(sweep), "--setting", "tool", "--methods",
                                                          "SFT", "SFT-muLR")) == 0
    got = {Path(overrides(c)["run.output_dir"]).parent.name: overrides(c) for c in calls(tmp_path)}
    assert got["SFT-muLR"]["trainer.lr"] == "0.0002" and got["SFT"]["trainer.lr"] == "0.001"
    md = (tmp_path / "out/results.md").read_text()
    assert "math's own" not in md
    # the fake's SFT-muLR curve ends 10 points lower after step 40: its lowest point is the last, never back
    assert ("- [ ] CHORD-mu's precondition in this setting (the SFT-muLR arm: SFT at CHORD-mu's rate and rows) "
            "is back at the base's validation accuracy never (per seed), against 0.8 x window 60 = 48.") in md
