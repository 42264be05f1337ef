"""A stand-in for chord/train.py in the benchmark drivers' unit tests (tests/unit/test_method_comparison.py,
tests/unit/test_lr_sweep.py): reads the overrides a grid passes and at once writes what a run writes
(metrics.jsonl, eval.jsonl, eval/samples_step_N.jsonl, checkpoints/step_N/), with accuracies from the formulas
below, which the tests import to compute what the reports must say.

    python tests/unit/fake_trainer.py RECIPE key=value ...   # the recipe is ignored; the last key=value wins

FAKE_LOG (required): each call's arguments are appended to it as one JSON line. FAKE_FAIL: CHORD-mu runs crash
(exit 3). FAKE_SWAP: CHORD-phi rises the most. The method is the run folder's method part (RUNS/<method>/...).
"""

import json
import os
import sys
from pathlib import Path

BONUS = {"SFT": 0.0, "GRPO": 0.2, "SFT-then-RL": 0.3, "CHORD-mu": 0.4, "CHORD-phi": 0.1,  # test ID rise per run
         "SFT-muLR": 0.05}
# (method, lr) -> validation gain at steps 40 and 60: the sweep's last two evaluations at --steps 60
LR_GAIN = {
    ("SFT", 3e-4): (0.3, 0.0), ("SFT", 1e-3): (0.2, 0.2),  # mean of the two: 1e-3 (the best single one: 3e-4)
    ("GRPO", 1e-4): (0.1, 0.1), ("GRPO", 3e-4): (0.2, 0.2),
    ("CHORD-phi", 1e-4): (0.1, 0.1), ("CHORD-phi", 3e-4): (0.1, 0.1),  # a tie: the smaller rate
    ("CHORD-mu", 3e-4): (0.3, 0.1), ("CHORD-mu", 1e-3): (0.0, 0.15),  # mean: 3e-4 (the last one alone: 1e-3)
}


def method_of(run_dir: Path) -> str:
    return next(p for p in reversed(run_dir.parts) if p in BONUS)


def bonus_of(method: str) -> float:
    return 0.5 if os.environ.get("FAKE_SWAP") and method == "CHORD-phi" else BONUS[method]


def id_acc(method: str, s: int, n: int, seed: int) -> float:
    """Test ID accuracy at the run's own step s of n: a straight rise by the method's bonus (OOD: half of it);
    seeds add a point each (the sweep's seed 100: none)."""
    return 0.3 + 0.01 * (seed % 10) + bonus_of(method) * s / n


def val_acc(method: str, s: int, n: int, seed: int, lr: float | None = None, flat: bool = False) -> float:
    """Validation accuracy. SFT: a dip at steps 1-10, above the base at 11-30, a little less after (flat: a base
    that never dips); the others rise like their test ID accuracy up to step 2n/3 and drop 0.1 after it, so that
    validation selects an earlier step than the test curve's best (its end)."""
    v = 0.3 + 0.01 * (seed % 10)
    if method == "SFT":
        v += 0.0 if flat or s == 0 else -0.1 if s <= 10 else 0.1 if s <= 30 else 0.05
    else:
        v += bonus_of(method) * min(s, 2 * n / 3) / n - (0.1 if s > 2 * n / 3 else 0.0)
    gain = LR_GAIN.get((method, lr), (0.0, 0.0))
    return v + (gain[0] if s == 40 else gain[1] if s == 60 else 0.0)


def expert_style(method: str, s: int, flat: bool = False) -> bool:
    return method == "SFT" and s > 0 and not flat


def main() -> int:
    args = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\n")
    out, seed, n = Path(args["run.output_dir"]), int(args["run.seed"]), int(args["trainer.steps"])
    method = method_of(out)
    if os.environ.get("FAKE_FAIL") and method == "CHORD-mu":
        print("boom: a crash")
        return 3
    lr = float(args["trainer.lr"]) if "trainer.lr" in args else None
    flat = "flat" in args["model.path"]
    benches = json.loads(args["eval.benchmarks"])
    out.mkdir(parents=True, exist_ok=True)
    rollout = 0 if method == "SFT" else 100
    expert = 10 if method in ("SFT", "CHORD-mu", "CHORD-phi") else 0
    with open(out / "metrics.jsonl", "w") as f:
        for s in range(1, n + 1):
            f.write(json.dumps({"step": s, "reward/mean": 0.5, "tokens/rollout": rollout, "tokens/expert": expert,
                                "loss/sft": 1.0 / s, "mu": 0.5, "entropy/rollout": 0.6 + 0.01 * seed,
                                "tokens": rollout + expert}) + "\n")
    every, keep = int(args.get("trainer.save_every", 0)), int(args.get("trainer.keep_last", 0))
    saved = list(range(every, n + 1, every)) if every else []
    for s in saved[-keep:] if keep else saved:
        (out / "checkpoints" / f"step_{s}").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / f"step_{s}" / "step.json").write_text(json.dumps({"step": s}))
    at = [s for s in json.loads(args.get("eval.at_steps", "[]")) if 0 < s < n]
    steps = sorted({0} if args.get("eval.at_start") == "true" else set()) + sorted(set(at)) + [n]
    (out / "eval").mkdir(exist_ok=True)
    with open(out / "eval.jsonl", "w") as f:
        for s in steps:
            row, samples = {"step": s}, []
            for b in benches:
                name, k = b["name"], int(b.get("k") or args.get("eval.k", 1))
                acc = {"val": val_acc(method, s, n, seed, lr, flat), "id": id_acc(method, s, n, seed),
                       "ood": id_acc(method, s, n, seed) / 2}[name]
                style = expert_style(method, s, flat)
                row |= {f"{name}/avg@{k}": acc, f"{name}/pass@{k}": min(1.0, acc + 0.1),
                        f"{name}/distinct_2": 0.4 if style else 0.7, f"{name}/length_mean": 40.0 if style else 6.0,
                        f"{name}/problems": b.get("max_problems") or 100}
                samples += [{"benchmark": name, "problem": p, "sample": i, "correct": i == 0,
                             "response": ("Values: 10, 5. Answer: 15" if style else "Answer: 15")}
                            for p in range(2) for i in range(2)]
            f.write(json.dumps(row) + "\n")
            (out / "eval" / f"samples_step_{s}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
