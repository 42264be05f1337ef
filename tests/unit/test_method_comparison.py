"""benchmarks/method_comparison.py's orchestration with a fake trainer: the grid, equal budgets, resume after a
failure, and a report built from the run folders' numbers (the real runs: tests/integration)."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import method_comparison as mc
from chord.models.cards import SHIPPED

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

FAKE = r'''
import json, os, sys
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
out, seed = Path(args["run.output_dir"]), int(args["run.seed"])
log = Path(os.environ["FAKE_LOG"]); log.open("a").write(json.dumps(sys.argv[1:]) + "\n")
if os.environ.get("FAKE_FAIL") and "CHORD-mu" in str(out):
    print("boom: a crash"); sys.exit(3)
stages = (json.loads(args["stages"]) if "stages" in args
          else [{"name": "", "trainer": {"steps": int(args["trainer.steps"])}}])
bonus = {"SFT": 0.0, "GRPO": 0.2, "SFT-then-RL": 0.3, "CHORD-mu": 0.4, "CHORD-phi": 0.1}[out.parent.name]
if os.environ.get("FAKE_SWAP") and out.parent.name == "CHORD-phi":
    bonus = 0.5
for i, st in enumerate(stages):
    d = out / f"stage{i + 1}-{st['name']}" if st["name"] else out
    d.mkdir(parents=True, exist_ok=True)
    n = st["trainer"]["steps"]
    with open(d / "metrics.jsonl", "w") as f:
        for s in range(1, n + 1):
            f.write(json.dumps({"step": s, "reward/mean": 0.5, "tokens/rollout": 100, "tokens/expert": 10,
                                "loss/sft": 1.0 / s, "mu": 0.5}) + "\n")
    with open(d / "eval.jsonl", "w") as f:
        for s in range(0, n + 1, 2):
            acc = 0.3 + bonus * s / n + 0.01 * seed
            f.write(json.dumps({"step": s, "id/avg@2": acc, "ood/avg@2": acc / 2, "id/problems": 16,
                                "ood/problems": 16}) + "\n")
'''


def _grid(tmp_path, monkeypatch, fail=False, k="2", extra=()):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    if fail:
        monkeypatch.setenv("FAKE_FAIL", "1")
    else:
        monkeypatch.delenv("FAKE_FAIL", raising=False)
    # the fake ignores chord/train.py (its first argument) and reads the overrides
    monkeypatch.setattr(mc, "base_model", lambda a: "cards")
    monkeypatch.setattr(mc, "POLL_S", 0.05)
    return mc.main(["--seeds", "2", "--steps", "8", "--eval-every", "2", "--k", k, "--eval-problems", "16",
                    "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--python", sys.executable,
                    "--fake-trainer", str(fake), *extra])


def test_grid_resumes_after_a_failed_run_and_reports_every_run(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="CHORD-mu/seed0 failed \\(exit 3\\): boom: a crash"):
        _grid(tmp_path, monkeypatch, fail=True)
    first = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(first) == 4  # SFT, GRPO, SFT-then-RL finished; CHORD-mu failed
    assert _grid(tmp_path, monkeypatch) == 0
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()][4:]
    assert len(calls) == 2 * 5 - 3  # the three finished runs were skipped
    for c in first + calls:
        kv = dict(x.split("=", 1) for x in c if "=" in x)
        if "stages" in kv:  # SFT-then-RL: the budget split half SFT, half RL, RL from the SFT best
            st = json.loads(kv["stages"])
            assert [s["trainer"]["steps"] for s in st] == [4, 4] and st[1]["init"] == "best"
        else:
            assert kv["trainer.steps"] == "8"
        if "chord_mu" in c[1]:
            assert kv["algorithm.mu.decay_steps"] == "4"
    md = (tmp_path / "out/results.md").read_text()
    res = json.loads((tmp_path / "out/results.json").read_text())
    assert len(res) == 10 and {r["method"] for r in res} == set(mc.METHODS)
    chord_mu = [r for r in res if r["method"] == "CHORD-mu"]
    assert [r["id"]["final"] for r in chord_mu] == pytest.approx([0.7, 0.71])  # read from the runs' eval.jsonl
    assert "| CHORD-mu | 2 | 30.5 ± 6.4 | 70.5 ± 6.4 | 70.5 ± 6.4 |" in md
    # the same seeds on both sides: paired over seeds (the fake's seed offset cancels), Welch beside it
    assert ("CHORD-mu beats SFT-then-RL on ID final accuracy (+10.0 points, paired 95% CI [+10.0, +10.0]; "
            "Welch [+7.0, +13.0])") in md
    assert "CHORD-phi vs SFT on OOD final accuracy" in md or "CHORD-phi beats SFT on OOD" in md
    for png in ("eval_id.png", "eval_ood.png", "train_reward.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
    prov = (tmp_path / "out/provenance.md").read_text()
    assert "commit:" in prov and prov.count("| CHORD-mu/seed") == 2  # every run, with the code it ran
    # the runs' base (model.path=cards: the shipped one), traced to its weights
    shipped = json.loads(next(SHIPPED.glob("cards-*/chord_build.json")).read_text())["weights_sha256"]
    assert f"model.safetensors, sha256 {shipped} (checked: the sha256 its chord_build.json records)" in prov


def test_a_run_made_from_other_arguments_or_recipe_is_never_reused(tmp_path, monkeypatch):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text((ROOT / mc.METHODS["SFT"]).read_text())
    monkeypatch.setitem(mc.METHODS, "SFT", str(recipe))
    assert _grid(tmp_path, monkeypatch) == 0
    n = len((tmp_path / "calls.jsonl").read_text().splitlines())
    assert _grid(tmp_path, monkeypatch) == 0  # same arguments: everything is reused
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == n
    with pytest.raises(SystemExit, match=r"SFT/seed0 was made differently \(other arguments: .*eval.k was 2, now 3"):
        _grid(tmp_path, monkeypatch, k="3")
    recipe.write_text(recipe.read_text() + "# edited\n")
    with pytest.raises(SystemExit, match=r"SFT/seed0 was made differently \(its recipe changed\)"):
        _grid(tmp_path, monkeypatch)
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == n  # nothing ran


def test_other_seeds_are_checked_against_a_previous_grid(tmp_path, monkeypatch):
    assert _grid(tmp_path, monkeypatch) == 0  # seeds 0-1 -> out
    first = tmp_path / "first"
    (tmp_path / "out").rename(first)
    assert _grid(tmp_path, monkeypatch, extra=("--seed-offset", "2", "--compare", str(first))) == 0
    md = (tmp_path / "out/results.md").read_text().split("## Reproduction")[1]
    assert "(seeds 0, 1)" in md and "| CHORD-mu | 72.5 ± 6.4 | 70.5 ± 6.4 |" in md  # here: seeds 2-3
    assert "- ID: the same ranking. Mean here inside the 95% CI there: 5/5 methods." in md
    monkeypatch.setenv("FAKE_SWAP", "1")  # CHORD-phi jumps from 4th to 1st
    assert _grid(tmp_path, monkeypatch, extra=("--seed-offset", "4", "--runs", str(tmp_path / "runs2"),
                                               "--compare", str(first))) == 0
    md = (tmp_path / "out/results.md").read_text().split("## Reproduction")[1]
    assert ("- ID: swapped: CHORD-phi vs CHORD-mu (+10.0 here, -30.0 there: **outside the noise in at least one**)"
            in md and "inside the 95% CI there: 4/5 methods (outside: CHORD-phi)." in md)


def test_base_weights_are_hashed_and_a_changed_shipped_base_stops_the_grid(tmp_path):
    shipped = next(SHIPPED.glob("cards-*"))
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
    a = mc.parse_args(["--quick", "--runs", "/tmp/x", "--out", "/tmp/y"])
    assert (a.seeds, a.steps, a.eval_problems, a.base_steps) == (1, 6, 16, 400)


def test_script_help_runs():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/method_comparison.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--seeds" in r.stdout
