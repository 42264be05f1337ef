"""One tuning procedure for every method (docs/benchmark.md#the-learning-rate-sweep): the same learning-rate grid,
the same warm-up and budget, on a tuning seed disjoint from the reported seeds, selected on validation only.

    python benchmarks/lr_sweep.py [--setting math] [--lrs 1e-4 3e-4 1e-3] [--seed 100] [--steps 60]
    python benchmarks/lr_sweep.py --quick      # CI size

SFT, GRPO, CHORD-phi and CHORD-mu (window N/2) each run at every learning rate; CHORD-mu then runs its other window
(N) at its chosen rate (its one extra knob, as SFT-best's is its checkpoint). Score = mean validation avg@k at the
last two evaluations (2N/3 and N). SFT-then-RL needs no runs of its own: SFT's rate for its SFT part, GRPO's for
its RL part. Writes OUT/sweep.json (read by benchmarks/method_comparison.py --sweep), sweep.md with the one-rate-
for-all table from the same runs, CHORD-mu's precondition (does SFT at CHORD-mu's rate and rows readapt within
0.8 x its window?) and the grid's predicted run time from these runs' wall times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/lr_sweep.py`: sys.path[0] is benchmarks/
    sys.path.insert(0, str(ROOT))

from benchmarks import method_comparison as mc  # noqa: E402
from chord.analysis.claims import style_stats  # noqa: E402
from chord.analysis.runs import read_jsonl  # noqa: E402

SWEPT = ("SFT", "GRPO", "CHORD-phi", "CHORD-mu")
READAPT_SHARE = 0.8  # an Adam-cosine window of D steps gives ~0.74 D full-rate SFT steps (docs/benchmark.md)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", choices=list(mc.SETTINGS), default="math")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    p.add_argument("--seed", type=int, default=mc.TUNING_SEED, help=f"tuning seed (default {mc.TUNING_SEED})")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--eval-problems", type=int, default=None)
    p.add_argument("--worked", type=float, default=None)
    p.add_argument("--base-steps", type=int, default=None)
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/chord")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default runs/lr-sweep-<setting>)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/lr_sweep_<setting>_<date>)")
    p.add_argument("--quick", action="store_true", help="CI size: 6 steps, 16 validation problems x 2, small base")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--no-warm", action="store_true")
    p.add_argument("--calibrate", type=float, nargs="+", default=None, metavar="SHARE",
                   help="instead of the sweep: choose the math base's worked share (docs/benchmark.md#two-settings)")
    p.add_argument("--fake-trainer", default=str(ROOT / "chord/train.py"), help=argparse.SUPPRESS)  # tests
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.k, a.eval_problems, a.base_steps = 6, 2, a.eval_problems or 16, a.base_steps or 400
    a.worked = mc.SETTINGS[a.setting] if a.worked is None else a.worked
    a.runs = a.runs or ROOT / f"runs/lr-sweep-{a.setting}{'-quick' if a.quick else ''}"
    a.out = a.out or ROOT / f"benchmarks/results/lr_sweep_{a.setting}_{date.today():%Y-%m-%d}"
    a.seeds, a.seed_offset, a.sweep = 1, a.seed, None
    return a


def sweep_plan(a: argparse.Namespace, model: str, method: str, lr: float, window: int | None = None) -> mc.Plan:
    """One sweep run: validation evaluations only (the sweep never sees a test split)."""
    choice = {method: {"lr": lr, **({"decay_steps": window} if window else {})}}
    tag = f"lr{lr:g}" + (f"_window{window}" if window else "")
    d = a.runs / method / tag / f"seed{a.seed}"
    args = [str(ROOT / mc.ALL_METHODS[method].recipe), f"run.output_dir={d}", f"run.seed={a.seed}",
            *mc.common_args(a, model, splits=("val",)), *mc.method_args(method, a, choice), f"trainer.steps={a.steps}"]
    return mc.Plan(f"{method}@{tag}", a.seed, d, args, a.steps)


def val_curve(p: mc.Plan, k: int) -> dict[int, float]:
    rows, _ = read_jsonl(p.dir / "eval.jsonl")
    return {int(r["step"]): r[f"val/avg@{k}"] for r in rows if f"val/avg@{k}" in r}


def score(curve: dict[int, float]) -> float:
    """Mean validation accuracy at the last two evaluations: less noisy than the last alone, still late."""
    last = sorted(curve)[-2:]
    return statistics.mean(curve[s] for s in last)


def readapt_step(curve: dict[int, float]) -> int | None:
    """The first evaluation after the lowest point at which validation accuracy is back at or above step 0's."""
    steps = sorted(s for s in curve if s > 0)
    if not steps:
        return None
    low = min(steps, key=lambda s: (curve[s], s))
    if curve[low] >= curve[0]:  # no dip: back at once
        return steps[0]
    return next((s for s in steps if s >= low and curve[s] >= curve[0]), None)


CALIBRATION_LR = 3e-4  # the middle of the sweep's grid: the base is chosen before any rate is


def calibrate(a: argparse.Namespace) -> int:
    """The smallest worked share whose base meets the math regime's three criteria with SFT at CALIBRATION_LR for
    N/2 steps (seed a.seed, validation only): (a) a validation dip of >= 5 points at step <= N/6, (b) validation
    above the base at step N/2, (c) the base answers >= 95% of validation hands tersely."""
    rows, chosen = [], None
    a.out.mkdir(parents=True, exist_ok=True)
    for share in sorted(a.calibrate):
        a.worked = share
        model = mc.base_model(a)
        base = mc.base_weights(model, a.cache_dir)
        runs = a.runs / f"calibrate-worked{share:g}"
        runs.mkdir(parents=True, exist_ok=True)
        half = max(1, a.steps // 2)
        p = sweep_plan(a, model, "SFT", CALIBRATION_LR)
        p.dir = runs / "SFT" / f"seed{a.seed}"
        p.args = [x if not x.startswith(("run.output_dir=", "trainer.steps=")) else
                  f"run.output_dir={p.dir}" if x.startswith("run.") else f"trainer.steps={half}" for x in p.args]
        p.steps = half
        server = mc.make_server(a, runs / "train.log")
        try:
            mc.run_grid([p], a.fake_trainer, server, runs / "train.log")
        finally:
            server.close()
        curve = val_curve(p, a.k)
        early = max(s for s in mc.eval_points(a.steps) if s <= a.steps // 6)
        dip = min(v for s, v in curve.items() if 0 < s <= early) - curve[0]
        up = curve.get(half, float("nan")) - curve[0]
        terse = 1 - style_stats(p.dir)[("val", 0)]["expert_share"]
        ok = {"dip": dip <= -0.05, "above": up > 0, "terse": terse >= 0.95}
        rows.append({"worked": share, "base_sha256": base["sha256"], "curve": curve, "dip": dip, "up": up,
                     "terse": terse, "criteria": ok, "met": all(ok.values())})
        if all(ok.values()) and chosen is None:
            chosen = share
    (a.out / "calibration.json").write_text(json.dumps({"lr": CALIBRATION_LR, "seed": a.seed, "chosen": chosen,
                                                        "rows": rows}, indent=1))
    md = ["# Calibration of the math setting's base: the share of worked plain-number sums", "",
          f"SFT at lr {CALIBRATION_LR:g} for {a.steps // 2} steps (seed {a.seed}, validation only). Criteria: (a) a "
          f"validation dip of >= 5 points by step {max(s for s in mc.eval_points(a.steps) if s <= a.steps // 6)}, "
          f"(b) validation above the base at step {a.steps // 2}, (c) >= 95% of the base's validation answers terse. "
          "The smallest share meeting all three is the math setting's.", "",
          "| worked share | validation curve (step: %) | dip (points) | step N/2 - start | terse at start | "
          "(a) | (b) | (c) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["criteria"]
        md.append(f"| {r['worked']:g} | " + ", ".join(f"{s}: {100 * v:.1f}" for s, v in sorted(r["curve"].items()))
                  + f" | {100 * r['dip']:+.1f} | {100 * r['up']:+.1f} | {100 * r['terse']:.1f}% | "
                  + " | ".join("yes" if c[x] else "no" for x in ("dip", "above", "terse")) + " |")
    md += ["", f"Chosen: {chosen if chosen is not None else 'none of them'}.", ""]
    (a.out / "calibration.md").write_text("\n".join(md))
    print(f"lr_sweep: calibration -> {a.out / 'calibration.md'} (chosen: {chosen})")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.calibrate:
        return calibrate(a)
    t0 = time.perf_counter()
    model = mc.base_model(a)
    base = mc.base_weights(model, a.cache_dir)
    a.runs.mkdir(parents=True, exist_ok=True)
    log = a.runs / "train.log"
    server = mc.make_server(a, log)
    window_half, window_full = max(1, a.steps // 2), a.steps
    try:
        plans = {(m, lr, window_half if m == "CHORD-mu" else None): sweep_plan(a, model, m, lr,
                                                                              window_half if m == "CHORD-mu" else None)
                 for m in SWEPT for lr in a.lrs}
        mc.run_grid(list(plans.values()), a.fake_trainer, server, log)
        scores = {key: score(val_curve(p, a.k)) for key, p in plans.items()}
        best_lr = {m: max(a.lrs, key=lambda lr, m=m: (scores[(m, lr, window_half if m == "CHORD-mu" else None)], -lr))
                   for m in SWEPT}
        extra = sweep_plan(a, model, "CHORD-mu", best_lr["CHORD-mu"], window_full)
        mc.run_grid([extra], a.fake_trainer, server, log)
        plans[("CHORD-mu", best_lr["CHORD-mu"], window_full)] = extra
        scores[("CHORD-mu", best_lr["CHORD-mu"], window_full)] = score(val_curve(extra, a.k))
    finally:
        server.close()
    report(a, plans, scores, best_lr, window_half, window_full, base, time.perf_counter() - t0)
    print(f"lr_sweep: {len(plans)} runs -> {a.out / 'sweep.md'}")
    return 0


def report(a: argparse.Namespace, plans: dict, scores: dict, best_lr: dict[str, float], half: int, full: int,
           base: dict, wall: float) -> None:
    wall_of = {key: json.loads((p.dir / mc.DONE).read_text())["wall_s"] for key, p in plans.items()}
    chosen: dict[str, dict] = {m: {"lr": best_lr[m]} for m in SWEPT}
    mu_lr = best_lr["CHORD-mu"]
    chosen["CHORD-mu"]["decay_steps"] = max((half, full), key=lambda w: (scores[("CHORD-mu", mu_lr, w)], -w))
    sel = {m: (m, c["lr"], c.get("decay_steps")) for m, c in chosen.items()}

    def margin(m: str) -> float:  # the chosen rate's lead over the runner-up, in points
        w = half if m == "CHORD-mu" else None
        s = sorted((scores[(m, lr, w)] for lr in a.lrs), reverse=True)
        return 100 * (s[0] - s[1]) if len(s) > 1 else float("nan")

    # one rate for all: the rate with the best mean rank over the methods (CHORD-mu at window N/2)
    ranks = {lr: statistics.mean(sorted(a.lrs, key=lambda x, m=m: -scores[(m, x, half if m == "CHORD-mu" else None)]
                                        ).index(lr) + 1 for m in SWEPT) for lr in a.lrs}
    shared = min(a.lrs, key=lambda lr: (ranks[lr], lr))
    sft = val_curve(plans[("SFT", mu_lr, None)], a.k)
    t_readapt, window = readapt_step(sft), chosen["CHORD-mu"]["decay_steps"]
    met = t_readapt is not None and t_readapt <= READAPT_SHARE * window
    pre = {"met": met, "t_readapt": t_readapt, "window": window, "lr": mu_lr,
           "text": f"SFT at CHORD-mu's learning rate ({mu_lr:g}) and expert rows is back at the base's validation "
                   f"accuracy at step {t_readapt if t_readapt is not None else 'never (within the run)'}; CHORD-mu's "
                   f"window is {window} steps, so the precondition (<= {READAPT_SHARE} x window = "
                   f"{READAPT_SHARE * window:g}) is {'met' if met else '**not met**'}."}
    # the grid's run time predicted from these runs (SFT-then-RL: GRPO for the half it runs, docs/benchmark.md)
    per_seed = {m: wall_of[sel[m]] for m in SWEPT}
    per_seed["SFT-then-RL"] = wall_of[sel["GRPO"]] * 0.75
    predicted = 3 * sum(per_seed.values())
    js = {"setting": a.setting, "seed": a.seed, "steps": a.steps, "lrs": a.lrs, "k": a.k,
          "base_sha256": base["sha256"], "score": "mean validation avg@k at the last two evaluations",
          "scores": {f"{m}@lr{lr:g}" + (f"_window{w}" if w else ""): v for (m, lr, w), v in scores.items()},
          "wall_s": {f"{m}@lr{lr:g}" + (f"_window{w}" if w else ""): v for (m, lr, w), v in wall_of.items()},
          "chosen": chosen, "margin_points": {m: margin(m) for m in SWEPT}, "shared_lr": shared,
          "shared_lr_scores": {m: scores[(m, shared, half if m == "CHORD-mu" else None)] for m in SWEPT},
          "precondition": pre, "predicted_grid_s": predicted, "val_curves": {
              f"{m}@lr{lr:g}" + (f"_window{w}" if w else ""): val_curve(p, a.k) for (m, lr, w), p in plans.items()}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "sweep.json").write_text(json.dumps(js, indent=1))
    head = "| method | " + " | ".join(f"lr {lr:g}" for lr in a.lrs) + " | chosen | lead over runner-up (points) |"
    lines = [head, "|---" * (3 + len(a.lrs)) + "|"]
    for m in SWEPT:
        w = half if m == "CHORD-mu" else None
        cells = [f"{100 * scores[(m, lr, w)]:.1f}" for lr in a.lrs]
        tie = " (**within evaluation noise**: under 5 points)" if margin(m) < 5 else ""
        lines.append(f"| {m}{f' (window {half})' if w else ''} | " + " | ".join(cells)
                     + f" | {best_lr[m]:g} | {margin(m):.1f}{tie} |")
    lines.append(f"| CHORD-mu (window {full}) | " + " | ".join(
        f"{100 * scores[('CHORD-mu', lr, full)]:.1f}" if ("CHORD-mu", lr, full) in scores else "—" for lr in a.lrs)
                 + f" | window {chosen['CHORD-mu']['decay_steps']} | |")
    md = ["# Learning-rate sweep: " + a.setting + " setting", "",
          f"Seed {a.seed} (disjoint from the reported seeds 0-4), {a.steps} steps, the recipes' batches and a "
          f"{'5'}-step warm-up for every method. Score: mean validation ID avg@{a.k} at the last two evaluations "
          f"(steps {', '.join(map(str, mc.eval_points(a.steps)[-2:]))}), in %. No test split is evaluated. "
          "Ties (a lead under 5 points, about 2 standard errors of one evaluation) are kept as chosen and flagged; "
          "a second tuning seed to break them was not run.", "", *lines, "",
          f"SFT-then-RL: SFT's rate ({best_lr['SFT']:g}) for its SFT part, GRPO's ({best_lr['GRPO']:g}) for its RL "
          "part; its starting checkpoint is chosen on validation inside each grid run.", "",
          f"## One learning rate for all: {shared:g} (best mean rank over the methods)", "",
          "| method | score at the shared rate | score at its own rate |", "|---|---|---|",
          *[f"| {m} | {100 * js['shared_lr_scores'][m]:.1f} | {100 * scores[sel[m]]:.1f} |" for m in SWEPT], "",
          "## CHORD-mu's precondition", "", pre["text"], "",
          "## Time", "",
          f"Predicted run time of the default grid (5 methods x 3 seeds) from these runs' wall times at the chosen "
          f"settings: {predicted / 60:.1f} min (SFT-then-RL counted as 0.75 x GRPO). This sweep: {wall / 60:.1f} min "
          f"for {len(plans)} runs.", "",
          f"Provenance: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, commit {mc.git_commit()}, base sha256 {base['sha256']}"
          f", command: python benchmarks/lr_sweep.py {' '.join(sys.argv[1:])}", ""]
    (a.out / "sweep.md").write_text("\n".join(md))


if __name__ == "__main__":
    raise SystemExit(main())
