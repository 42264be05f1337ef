"""Compare chord runs (CHORD, SFT-then-RL, SFT, GRPO): one markdown table, a JSON twin, and PNG plots.

    python benchmarks/compare.py runs/math-chord-phi=CHORD runs/math-sft-then-rl=SFT+RL runs/math-grpo \
        --out runs/compare [--metric overall/avg] [--smooth 0.6]

Each RUN_DIR is a `run.output_dir` (metrics.jsonl, eval.jsonl) or a staged run folder (stage1-<name>/,
stage2-<name>/, ...), read as one timeline by chord.analysis.runs.load_run (stage i's steps offset by the
steps of the stages before it, so a later stage's step-0 evaluation sits at its stage start).
Writes OUT/comparison.md (per run: each benchmark's avg@k at start / best / final, --metric best/final,
training reward and entropy/rollout over the last 10% of steps, steps, stages), OUT/comparison.json
(the same numbers, fractions not percents) and OUT/eval_*.png, OUT/train_*.png (global step on x,
stage starts as dotted lines), and a table of the CHORD phases (shift, readapt, overfit) per run and
benchmark (chord.analysis.phases). Best is the highest value (lowest for length_mean / truncated_frac).
entropy/rollout (entropy/expert) is ignored on steps without rollout (expert) tokens, e.g. SFT steps.
Malformed JSON lines are skipped and counted. Exit 2 when a RUN_DIR holds neither metrics nor stages.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from chord.analysis.curves import finish_plot  # noqa: E402
from chord.analysis.phases import Phases  # noqa: E402
from chord.analysis.run_phases import phases_from_rows  # noqa: E402
from chord.analysis.runs import AVG_KEY, Run, RunFolderError, eval_stats, load_run, series  # noqa: E402

PERCENT = re.compile(r"(avg@\d+|pass@\d+|truncated_frac|^overall/avg|^overall/pass)$")
TRAIN_PLOTS = [("train_reward.png", "reward/mean", True), ("train_entropy.png", "entropy/rollout", True),
               ("train_length.png", "response/length_mean", True), ("train_mu.png", "mu", False)]
DASH = "—"


def ema(values: list[float], smooth: float) -> list[float]:
    """s_0 = x_0, s_t = smooth * s_{t-1} + (1 - smooth) * x_t."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else smooth * out[-1] + (1 - smooth) * v)
    return out


def tail_mean(values: list[float], frac: float = 0.1) -> float | None:
    n = max(1, math.ceil(len(values) * frac))
    return sum(values[-n:]) / n if values else None


def benchmarks(runs: list[Run]) -> list[str]:
    return sorted({k for run in runs for r in run.evals for k in r if AVG_KEY.match(k)})


def summarize(run: Run, metric: str, benches: list[str] | None = None) -> dict:
    benches = benchmarks([run]) if benches is None else benches
    return {"label": run.label, "path": str(run.path), "steps": run.steps,
            "stages": [{"name": s.name, "start": s.start, "end": s.end} for s in run.stages],
            "benchmarks": {b: eval_stats(run, b) for b in benches},
            "metric": {"name": metric, **eval_stats(run, metric)},
            "reward_final": tail_mean(series(run.rows, "reward/mean")[1]),
            "entropy_final": tail_mean(series(run.rows, "entropy/rollout")[1]),
            "skipped_lines": run.skipped}


def fmt(value: float | None, key: str = "") -> str:
    if value is None:
        return DASH
    return f"{100 * value:.1f}%" if PERCENT.search(key) else f"{value:.3f}"


def _best(st: dict, key: str) -> str:
    return DASH if st["best"] is None else f"{fmt(st['best'], key)} (step {st['best_step']})"


def phases_table(phases: list[tuple[str, dict[str, Phases]]]) -> list[str]:
    """Markdown lines: per run and benchmark, the global step where each CHORD phase starts."""
    lines = ["## Phases", "", "| run | split | shift | readapt | overfit |", "|---|---|---:|---:|---:|"]
    for label, by_split in phases:
        lines += [f"| {label} | {DASH} | {DASH} | {DASH} | {DASH} |"] if not by_split else []
        for split, ph in by_split.items():
            cells = [DASH if v is None else str(v) for v in (ph.shift, ph.readapt, ph.overfit)]
            lines.append(f"| {label} | {split} | " + " | ".join(cells) + " |")
    return lines + ["", "Step where held-out avg@k falls below its value before SFT (shift), climbs back above "
                    "it (readapt), and falls from its peak while the expert loss still falls (overfit), each by "
                    "more than 2 standard errors (binomial over problems x k) at 2 evaluations in a row "
                    f"(chord.analysis.phases). Split {DASH}: no SFT steps, or no `<benchmark>/problems` logged.", ""]


def markdown(summaries: list[dict], metric: str, plots: list[str], skipped: list[str],
             phases: list[tuple[str, dict[str, Phases]]] | None = None) -> str:
    benches = list(summaries[0]["benchmarks"]) if summaries else []
    head = ["run", "steps", "stages"]
    for b in benches:
        head += [f"`{b}` start", f"`{b}` best", f"`{b}` final"]
    head += [f"`{metric}` best", f"`{metric}` final", "reward/mean final", "entropy/rollout final"]
    lines = ["# Run comparison", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        stages = "; ".join(f"{st['name']} {st['start']}–{st['end']}" for st in s["stages"]) or DASH
        cells = [s["label"], str(s["steps"]), stages]
        for b in benches:
            st = s["benchmarks"][b]
            cells += [fmt(st["start"], b), _best(st, b), fmt(st["final"], b)]
        m = s["metric"]
        cells += [_best(m, metric), fmt(m["final"], metric), fmt(s["reward_final"]), fmt(s["entropy_final"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "How to read: start = first evaluation, best = highest value (lowest for length / truncation) "
              "with its global step, final = last evaluation; reward and entropy are means over the last 10% "
              f"of the steps that log them; staged runs are one timeline (stage: start–end global step); {DASH} = "
              "not logged. Plots: global step on x, stage starts dotted, training curves EMA-smoothed over "
              "the faint raw line.", ""]
    lines += phases_table(phases) if phases is not None else []
    lines += ["## Plots", ""]
    lines += [f"- `{p}`" for p in plots] + [f"- skipped: {s}" for s in skipped]
    bad = [f"{s['label']}: {s['skipped_lines']}" for s in summaries if s["skipped_lines"]]
    lines += ["", "Malformed lines skipped: " + (", ".join(bad) if bad else "none"), ""]
    return "\n".join(lines)


def plot(runs: list[Run], metric: str, out: Path, smooth: float) -> tuple[list[str], list[str]]:
    """Write the PNGs into `out`; returns (files written, 'file: reason' for each plot skipped)."""
    written, skipped = [], []
    jobs = [(f"eval_{k.replace('/', '_')}.png", k, True, False)
            for k in [metric] + [b for b in benchmarks(runs) if b != metric]]
    jobs += [(name, key, False, sm and smooth > 0) for name, key, sm in TRAIN_PLOTS]
    for name, key, is_eval, smoothed in jobs:
        data = [series(r.evals if is_eval else r.rows, key) for r in runs]
        if not any(xs for xs, _ in data):
            skipped.append(f"{name}: no run logs `{key}`")
            continue
        scale = 100 if is_eval and PERCENT.search(key) else 1
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, (run, (xs, ys)) in enumerate(zip(runs, data)):
            c, ys = f"C{i}", [scale * y for y in ys]
            if is_eval and xs:
                ax.plot(xs, ys, marker="osD^v<>"[i % 7], ms=5 + 2 * (i > 0), mfc="none" if i else c, color=c,
                        alpha=0.9, label=run.label)  # later runs hollow: equal values stay visible
            elif smoothed and xs:
                ax.plot(xs, ys, color=c, alpha=0.25, lw=1)
                ax.plot(xs, ema(ys, smooth), color=c, label=run.label)
            elif xs:
                ax.plot(xs, ys, color=c, label=run.label)
            for step, stage in run.boundaries:
                ax.axvline(step, color=c, ls=":", lw=1.2)
                ax.annotate(f"{run.label}: {stage}", (step, 0), xycoords=("data", "axes fraction"), xytext=(2, 3),
                            textcoords="offset points", rotation=90, fontsize=7, color=c, va="bottom")
        title = f"{'evaluation' if is_eval else 'training'}: {key}" + (f" (EMA {smooth})" if smoothed else "")
        ax.set(title=title, xlabel="global step", ylabel=key + (" (%)" if scale == 100 else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        finish_plot(fig, ax, out / name)
        written.append(name)
    return written, skipped


def final_model(run_dir: Path) -> Path:
    """A run's final model: the last stage's `final/` for a staged run, else what chord.diagnose resolves."""
    from chord.spectrum.model_folder import resolve_model_folder

    stages = sorted(Path(run_dir).glob("stage*/final"), key=lambda p: int(re.sub(r"\D.*", "", p.parent.name[5:]) or 0))
    return stages[-1] if stages else resolve_model_folder(run_dir)


def spectrum_section(runs: list, start: Path, out: Path) -> str:
    """What each method did to the weights (arXiv 2508.16546): start -> final drift and principal angles,
    per run one line here and the full chord.diagnose output in spectrum/<label>/."""
    from chord.spectrum.diagnostics import diagnose
    from chord.spectrum.report import write_outputs

    lines = ["", "## Weights: start -> final (chord.diagnose, k = 1% of rank)", "",
             "| run | drift mean % | U angle (deg) | V angle (deg) | random (deg) | details |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        labels, pairs, rows = diagnose([start, final_model(r.path)], (0.01,), progress=False)
        folder = out / "spectrum" / re.sub(r"[^A-Za-z0-9_.-]+", "_", r.label)
        write_outputs(folder, labels, pairs, rows, (0.01,))
        mean = {k: sum(x[k] for x in rows) / len(rows)
                for k in ("drift_mean", "angle_u_mean", "angle_v_mean", "base_u_mean")}
        lines.append(f"| {r.label} | {100 * mean['drift_mean']:.2f} | {mean['angle_u_mean']:.2f} | "
                     f"{mean['angle_v_mean']:.2f} | {mean['base_u_mean']:.2f} | "
                     f"`{folder.relative_to(out)}/summary.md` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/compare.py", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR[=LABEL]")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--metric", default="overall/avg", help="evaluation metric, e.g. overall/avg, aime24/avg@32")
    ap.add_argument("--smooth", type=float, default=0.6, help="EMA weight for training curves, 0 <= s < 1")
    ap.add_argument("--spectrum", type=Path, default=None, metavar="START_MODEL",
                    help="also diagnose each run's final model against this starting model (chord.diagnose)")
    args = ap.parse_args(argv)
    if not 0 <= args.smooth < 1:
        ap.error("--smooth must be in [0, 1)")
    metric = args.metric.removeprefix("eval/")
    try:
        runs = []
        for spec in args.runs:
            path, label = (spec.rsplit("=", 1) if "=" in spec and not Path(spec).exists() else (spec, None))
            runs.append(load_run(path, label or None))
    except RunFolderError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    benches = benchmarks(runs)
    summaries = [summarize(r, metric, benches) for r in runs]
    plots, skipped = plot(runs, metric, args.out, args.smooth)
    phases = [(r.label, phases_from_rows(r.evals, r.rows)) for r in runs]
    text = markdown(summaries, metric, plots, skipped, phases)
    if args.spectrum is not None:
        try:
            text += spectrum_section(runs, args.spectrum, args.out)
        except ValueError as e:  # chord.spectrum.model_folder.InputError: a one-line reason
            print(f"compare: --spectrum: {e}", file=sys.stderr)
            return 2
    (args.out / "comparison.md").write_text(text)
    (args.out / "comparison.json").write_text(json.dumps({"metric": metric, "runs": summaries}, indent=2) + "\n")
    print(f"compare: {len(runs)} runs -> {args.out}/comparison.md, {len(plots)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
