"""The method comparison's report (benchmarks/method_comparison.py): results.md, results.json, plots, provenance.

Primary numbers (docs/benchmark.md#honest-numbers): the final evaluation (a fixed budget, no selection), the
validation-selected one (test accuracy at the step with the highest validation accuracy, never step 0: the paper's
App. A.2) and the area under the test curve (the cost of the shift, which neither sees). The best test evaluation
is in results.json only, labelled as the optimistic oracle it is. Comparisons are paired over seeds (same seed =
same data order and evaluation seeds), with Welch's interval beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.method_comparison import DONE, METHODS, SPLITS, Plan, eval_points, git_commit, sft_candidates  # noqa: E402
from chord.analysis.claims import area_under_curve, entropy_end, style_stats, val_selected  # noqa: E402
from chord.analysis.curves import finish_plot  # noqa: E402
from chord.analysis.phases import Phases  # noqa: E402
from chord.analysis.run_phases import phases_from_rows  # noqa: E402
from chord.analysis.runs import Run, Stage, eval_stats, load_run, series  # noqa: E402
from chord.analysis.seed_stats import MeanCI, diff_ci, mean_ci, paired_diff_ci, verdict  # noqa: E402

if TYPE_CHECKING:
    from chord.distributed.warm_launch import WarmServer

TEST = ("id", "ood")
DIP_POINTS = 5.0  # the SFT check's dip on validation, in points (about 2 standard errors of one evaluation)


@dataclass
class Result:
    plan: Plan
    run: Run  # an SFT-then-RL arm: the SFT run up to its start, then its own steps (one timeline)
    done: dict  # the run's benchmark_done.json: wall_s, attempts, commit, finished, note
    tokens: float
    wall_s: float
    phases: dict[str, Phases]
    k: int
    styles: dict[tuple[str, int], dict] = field(default_factory=dict)  # chord.analysis.claims.style_stats

    def key(self, split: str) -> str:
        return f"{split}/avg@{self.k}"

    def stat(self, split: str) -> dict:
        """start, final, auc, selected (test at the validation-selected step) and its step, oracle best."""
        s = eval_stats(self.run, self.key(split))
        sel = val_selected(self.run, self.key("val"), [self.key(split)]) or {}
        return {"start": s["start"], "final": s["final"], "auc": area_under_curve(self.run, self.key(split)),
                "selected": sel.get(self.key(split)), "selected_step": sel.get("step"),
                "oracle_best_test_selected_optimistic": s["best"], "oracle_best_step": s["best_step"]}

    def last_eval(self, name: str) -> float | None:
        vals = series(self.run.evals, name)[1]
        return vals[-1] if vals else None

    def style(self, bench: str, what: str) -> float | None:
        last = max((s for b, s in self.styles if b == bench), default=None)
        return None if last is None else self.styles[(bench, last)][what]


def join(sft: Run, rl: Run, k: int) -> Run:
    """The SFT run up to step k, then the RL run's steps offset by k: one timeline (as load_run joins stages)."""
    def shift(rows: list[dict]) -> list[dict]:
        return [{**r, "step": int(r["step"]) + k} for r in rows]

    end = k + max((int(r["step"]) for r in rl.rows), default=0)
    return Run(rl.label, rl.path, [r for r in sft.rows if r["step"] <= k] + shift(rl.rows),
               [r for r in sft.evals if r["step"] <= k] + shift(rl.evals), [Stage("sft", 0, k), Stage("rl", k, end)],
               sft.skipped + rl.skipped)


def tokens_of(rows: list[dict]) -> float:
    return sum(r.get("tokens/rollout", 0) + r.get("tokens/expert", 0) for r in rows)


def collect(plans: list[Plan], k: int) -> list[Result]:
    out = []
    for p in plans:
        run = load_run(p.dir, p.name)
        done = json.loads((p.dir / DONE).read_text())
        wall, styles = done["wall_s"], style_stats(p.dir)
        if p.info:  # an SFT-then-RL arm: the SFT steps it took over count in its tokens, time and curves
            ks = p.info["sft_step"]
            sft_dir = p.dir.parent.parent / "SFT" / f"seed{p.seed}"
            sft = load_run(sft_dir)
            run = join(sft, run, ks)
            wall += json.loads((sft_dir / DONE).read_text())["wall_s"] * ks / max(1, sft.steps)
            styles = {key: v for key, v in style_stats(sft_dir).items() if key[1] <= ks} | {
                (b, s + ks): v for (b, s), v in styles.items()}
        out.append(Result(p, run, done, tokens_of(run.rows), wall, phases_from_rows(run.evals, run.rows), k, styles))
    return out


def by_method(results: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault(r.plan.method, []).append(r)
    return out


def values(rs: list[Result], split: str, at: str) -> list[float]:
    return [v for r in rs if (v := r.stat(split)[at]) is not None]


def by_seed(rows: list[tuple[int, float | None]]) -> dict[int, float] | None:
    """{seed: value} from (seed, value) pairs; None when a seed repeats or lacks a value (nothing to pair)."""
    out = {seed: v for seed, v in rows if v is not None}
    return out if len(out) == len(rows) else None


def seeded(rs: list[Result], split: str, at: str = "final") -> dict[int, float] | None:
    return by_seed([(r.plan.seed, r.stat(split)[at]) for r in rs])


def paired_or_welch(a: dict[int, float] | None, b: dict[int, float] | None, va: list[float], vb: list[float]
                    ) -> tuple[MeanCI, MeanCI | None]:
    """(primary, Welch beside it) for mean(a) - mean(b): paired over seeds when both ran exactly the same seeds
    (same seed = same data order and evaluation seeds: the shared noise cancels, docs/benchmark.md#statistics),
    else Welch alone. a, b: {seed: value} (by_seed); va, vb: the plain values, for Welch."""
    welch = diff_ci(va, vb)
    if a is None or b is None or set(a) != set(b) or len(a) < 2:
        return welch, None
    seeds = sorted(a)
    return paired_diff_ci([a[s] for s in seeds], [b[s] for s in seeds]), welch


def cell(xs: list[float], scale: float = 100.0, digits: int = 1) -> str:
    return mean_ci(xs).fmt(scale=scale, digits=digits) if xs else "—"


def main_table(groups: dict[str, list[Result]]) -> list[str]:
    cols = ["start ID", "start OOD", "final val", "**final ID**", "**final OOD**", "val-selected ID",
            "val-selected OOD", "selected step", "AUC ID", "AUC OOD", "wall time per run (s)", "tokens per run (k)"]
    lines = ["| method | seeds | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    for m, rs in groups.items():
        steps = [r.stat("id")["selected_step"] for r in rs if r.stat("id")["selected_step"] is not None]
        cells = [cell(values(rs, "id", "start")), cell(values(rs, "ood", "start")), cell(values(rs, "val", "final")),
                 cell(values(rs, "id", "final")), cell(values(rs, "ood", "final")),
                 cell(values(rs, "id", "selected")), cell(values(rs, "ood", "selected")),
                 "/".join(str(s) for s in steps) or "—", cell(values(rs, "id", "auc")), cell(values(rs, "ood", "auc")),
                 cell([r.wall_s for r in rs], 1.0, 0), cell([r.tokens / 1000 for r in rs], 1.0, 0)]
        lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


PAIRS = [(a, b) for a in ("CHORD-mu", "CHORD-phi") for b in ("SFT-then-RL", "GRPO", "SFT")] + [
    ("SFT-then-RL", "GRPO"), ("SFT-then-RL", "SFT"), ("SFT-light-then-RL", "SFT-then-RL")]


def sentences(groups: dict[str, list[Result]], at: str) -> list[str]:
    what = {"final": "final accuracy", "selected": "validation-selected accuracy", "auc": "area under the curve"}[at]
    out = []
    for a, b in PAIRS:
        if a not in groups or b not in groups:
            continue
        for split in TEST:
            d, welch = paired_or_welch(seeded(groups[a], split, at), seeded(groups[b], split, at),
                                       values(groups[a], split, at), values(groups[b], split, at))
            out.append("- " + verdict(d, a, b, f"{split.upper()} {what}", welch))
    return out


def ranking(groups: dict[str, list[Result]], split: str) -> str:
    means = sorted(((mean_ci(values(rs, split, "final")).mean, m) for m, rs in groups.items()
                    if values(rs, split, "final")), reverse=True)
    return " > ".join(f"{m} ({100 * v:.1f})" for v, m in means)


def _box(ok: bool, n: int) -> str:
    return "- [ ] (one seed: no interval, not testable)" if n < 2 else f"- [{'x' if ok else ' '}]"


def checks(groups: dict[str, list[Result]], steps: int, sweep: dict | None, setting: str = "math") -> list[str]:
    """The setting's promises (docs/benchmark.md#setting-checks), each measured here: pass or fail, with numbers."""
    out = []
    if "GRPO" in groups:
        g = mean_ci([r.stat("id")["final"] - r.stat("id")["start"] for r in groups["GRPO"]])
        ok = g.n >= 2 and g.mean >= 0.10 and g.excludes_zero()
        out.append(f"{_box(ok, g.n)} GRPO raises test ID accuracy by >= 10 points with a 95% CI excluding 0: final "
                   f"- start = {g.fmt()} points.")
    if "SFT" in groups:
        rs = groups["SFT"]
        early = max(p for p in eval_points(steps) if p <= steps // 6)
        half = max(sft_candidates(steps))
        dips, ups = [], []
        for r in rs:
            st, vals = series(r.run.evals, r.key("val"))
            v = dict(zip(st, vals))
            dips.append(min(x for s, x in v.items() if 0 < s <= early) - v[0])
            ups.append(v[half] - v[0] if half in v else float("nan"))
        d, u = mean_ci(dips), mean_ci([x for x in ups if x == x])
        n_dip = sum(x <= -DIP_POINTS / 100 for x in dips)
        n_up = sum(x > 0 for x in ups)
        out.append(f"- [{'x' if n_dip == len(rs) else ' '}] SFT dips on validation by >= {DIP_POINTS:.0f} points at "
                   f"step <= {early}: in {n_dip}/{len(rs)} runs (lowest - start = {d.fmt()} points).")
        out.append(f"- [{'x' if n_up == len(rs) else ' '}] SFT is above the base on validation by step {half}: in "
                   f"{n_up}/{len(rs)} runs (step {half} - start = {u.fmt()} points).")
        terse = [1 - r.styles[("val", 0)]["expert_share"] for rs_ in groups.values() for r in rs_
                 if ("val", 0) in r.styles]
        if terse:
            t = min(terse)
            out.append(f"- [{'x' if t >= 0.95 else ' '}] The base answers tersely: >= 95% of its validation answers "
                       f"at step 0 are not in the expert style (lowest over runs: {100 * t:.1f}%).")
        over = sum(r.phases.get("ood") is not None and r.phases["ood"].overfit is not None for r in rs)
        late = mean_ci([r.stat("ood")["final"] - r.stat("ood")["start"] for r in rs])
        out.append(f"- Observation (not a check): SFT's test OOD accuracy, final - start = {late.fmt()} points; "
                   f"overfit label on OOD in {over}/{len(rs)} runs.")
    if "SFT" in groups and "GRPO" in groups:
        d, welch = paired_or_welch(seeded(groups["SFT"], "val"), seeded(groups["GRPO"], "val"),
                                   values(groups["SFT"], "val", "final"), values(groups["GRPO"], "val", "final"))
        regime = ("" if d.mean > 0 else "; it fails: the setting is tool-like (the paper's tool-use regime)")
        out.append(f"- [{'x' if d.mean > 0 else ' '}] The math regime (SFT beats GRPO, where the paper's headline "
                   f"claims live): SFT final - GRPO final on validation = {d.fmt()} points"
                   + (f" (Welch {welch.fmt()})" if welch else "") + regime + ".")
    window = (sweep or {}).get("chosen", {}).get("CHORD-mu", {}).get("decay_steps", steps // 2)
    if "SFT-muLR" in groups:  # measured in this grid: SFT at CHORD-mu's rate and rows, every seed
        from benchmarks.lr_sweep import READAPT_SHARE, readapt_step

        back = [readapt_step(dict(zip(*series(r.run.evals, r.key("val"))))) for r in groups["SFT-muLR"]]
        met = all(t is not None and t <= READAPT_SHARE * window for t in back)
        out.append(f"- [{'x' if met else ' '}] CHORD-mu's precondition in this setting (the SFT-muLR arm: SFT at "
                   f"CHORD-mu's rate and rows) is back at the base's validation accuracy "
                   + ", ".join("never" if t is None else f"at step {t}" for t in back) + " (per seed), against "
                   f"{READAPT_SHARE} x window {window} = {READAPT_SHARE * window:g}.")
    elif sweep and "precondition" in sweep and sweep.get("setting", "math") == setting:
        p = sweep["precondition"]
        out.append(f"- [{'x' if p['met'] else ' '}] CHORD-mu's precondition (benchmarks/lr_sweep.py): {p['text']}")
    elif sweep:
        out.append(f"- CHORD-mu's precondition: measured by the sweep for the {sweep.get('setting')} setting only; add "
                   "the SFT-muLR arm to measure it here.")
    return out


def claims_table(groups: dict[str, list[Result]], k: int) -> list[str]:
    """The paper's other claims, measured at the final evaluation: entropy, diversity, style absorption, OOD by
    style (docs/benchmark.md#the-papers-other-claims)."""
    grpo = [e for r in groups.get("GRPO", []) if (e := entropy_end(r.run)) is not None]
    base_e = statistics.mean(grpo) if grpo else None
    cols = ["rollout entropy, last 5 steps", "/ GRPO's", f"ID pass@{k} - avg@{k}", "ID distinct-2",
            "ID length (tokens)", "ID expert-style share", "OOD acc., expert style", "OOD acc., terse",
            "OOD expert-style share"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (1 + len(cols)) + "|"]
    for m, rs in groups.items():
        ent = [e for r in rs if (e := entropy_end(r.run)) is not None]
        gap = [p - a for r in rs if (p := r.last_eval(f"id/pass@{k}")) is not None
               and (a := r.last_eval(f"id/avg@{k}")) is not None]
        pick = [[v for r in rs if (v := f(r)) is not None] for f in (
            lambda r: r.last_eval("id/distinct_2"), lambda r: r.last_eval("id/length_mean"),
            lambda r: r.style("id", "expert_share"), lambda r: r.style("ood", "acc_expert"),
            lambda r: r.style("ood", "acc_other"), lambda r: r.style("ood", "expert_share"))]
        ratio = f"{statistics.mean(ent) / base_e:.2f}" if ent and base_e else "—"
        cells = [cell(ent, 1.0, 3), ratio, cell(gap), cell(pick[0], 1.0, 3), cell(pick[1], 1.0, 1), cell(pick[2]),
                 cell(pick[3]), cell(pick[4]), cell(pick[5])]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def phase_rows(results: list[Result]) -> list[str]:
    lines = ["| run | split | shift | readapt | overfit |", "|---|---|---|---|---|"]
    for r in results:
        for split in SPLITS:
            ph = r.phases.get(split)
            if ph is None:
                continue
            c = [str(getattr(ph, n)) if getattr(ph, n) is not None else "—" for n in ("shift", "readapt", "overfit")]
            lines.append(f"| {r.plan.name} | {split.upper()} | " + " | ".join(c) + " |")
    return lines


def starts(groups: dict[str, list[Result]]) -> list[str]:
    arms = [r for rs in groups.values() for r in rs if r.plan.info]
    if not arms:
        return []
    return ["SFT-then-RL arms start from the SFT run's checkpoint at step (validation accuracy of the candidates): "
            + "; ".join(f"{r.plan.name}: step {r.plan.info['sft_step']} ("
                        + ", ".join(f"{s}: {100 * v:.1f}" for s, v in r.plan.info["candidates"].items()) + ")"
                        for r in arms) + ".", ""]


def reproduction(groups: dict[str, list[Result]], other: Path) -> list[str]:
    """Does this grid reproduce another's (e.g. other seeds') ranking? Final test accuracy per method in both,
    each swapped pair with its CI in both grids (paired over seeds within a grid, docs/benchmark.md#statistics),
    and whether each mean here lies in the other's CI (unpaired: other seeds)."""
    rows = json.loads((other / "results.json").read_text())
    there = {m: [r for r in rows if r["method"] == m] for m in groups}
    there_s = {m: {s: by_seed([(r["seed"], r[s]["final"]) for r in there[m]]) for s in TEST} for m in groups}
    seeds = sorted({r["seed"] for r in rows})
    out = [f"Against `{other}` (seeds {', '.join(map(str, seeds))}); final accuracy, mean ± 95% CI.", "",
           "| method | " + " | ".join(f"{s.upper()} here | {s.upper()} there" for s in TEST) + " |",
           "|---" * (1 + 2 * len(TEST)) + "|"]
    for m, rs in groups.items():
        cells = [c for s in TEST for c in (cell(values(rs, s, "final")), cell([r[s]["final"] for r in there[m]]))]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append("")
    for s in TEST:
        here_v = {m: values(rs, s, "final") for m, rs in groups.items()}
        there_v = {m: [r[s]["final"] for r in there[m]] for m in groups if there[m]}
        here_ci, there_ci = ({m: mean_ci(v[m]) for m in there_v} for v in (here_v, there_v))
        order = sorted(there_v, key=lambda m: here_ci[m].mean, reverse=True)
        swaps = []
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                if there_ci[a].mean < there_ci[b].mean:
                    dh = paired_or_welch(seeded(groups[a], s), seeded(groups[b], s), here_v[a], here_v[b])[0]
                    dt = paired_or_welch(there_s[a][s], there_s[b][s], there_v[a], there_v[b])[0]
                    noise = "inside the noise in both" if not dh.excludes_zero() and not dt.excludes_zero() else \
                        "**outside the noise in at least one**"
                    swaps.append(f"{a} vs {b} ({100 * dh.mean:+.1f} here, {100 * dt.mean:+.1f} there: {noise})")
        testable = [m for m in order if there_ci[m].n >= 2]  # one seed there: no interval to fall inside
        outside = [m for m in testable if not there_ci[m].low <= here_ci[m].mean <= there_ci[m].high]
        out.append(f"- {s.upper()}: " + ("the same ranking. " if not swaps else "swapped: " + "; ".join(swaps) + ". ")
                   + f"Mean here inside the 95% CI there: {len(testable) - len(outside)}/{len(testable)} methods"
                   + (f" (outside: {', '.join(outside)})." if outside else "."))
    return out


PLOTS = [  # file, what to draw per run (source rows, key), title
    *[(f"eval_{s}.png", "evals", s, f"{'validation ID' if s == 'val' else 'test ' + s.upper()} accuracy (avg@k)")
      for s in SPLITS],
    ("train_reward.png", "rows", "reward/mean", "training reward (rollouts)"),
    ("train_entropy.png", "rows", "entropy/rollout", "rollout entropy (nats per token)"),
]


def plot_curves(groups: dict[str, list[Result]], out: Path) -> list[str]:
    made = []
    for name, src_name, what, title in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        drew = False
        for m, rs in groups.items():
            key = (lambda r, what=what: r.key(what)) if src_name == "evals" else (lambda r, what=what: what)
            src = [dict(zip(*series(getattr(r.run, src_name), key(r)))) for r in rs]
            steps = sorted(set.intersection(*(set(s) for s in src))) if src else []
            if not steps:
                continue
            scale = 1.0 if "entropy" in what else 100.0
            cis = [mean_ci([s[x] for s in src]) for x in steps]
            line, = ax.plot(steps, [scale * c.mean for c in cis], label=m, marker="o" if src_name == "evals" else None,
                            ms=3)
            if len(rs) > 1:
                ax.fill_between(steps, [scale * c.low for c in cis], [scale * c.high for c in cis],
                                color=line.get_color(), alpha=0.15, lw=0)
            if what == "val":  # the phase labels of each seed's validation curve: S(hift), R(eadapt), O(verfit)
                for r in rs:
                    ph = r.phases.get("val")
                    for letter, at in (("S", ph.shift), ("R", ph.readapt), ("O", ph.overfit)) if ph else ():
                        if at in src[0]:
                            ax.annotate(letter, (at, scale * statistics.mean(s[at] for s in src if at in s)),
                                        color=line.get_color(), fontsize=8, xytext=(2, 4), textcoords="offset points")
            for r in rs[:1]:
                for b, _ in r.run.boundaries:
                    ax.axvline(b, color=line.get_color(), ls=":", lw=1)
            drew = True
        if not drew:
            plt.close(fig)
            continue
        n = max(len(rs) for rs in groups.values())
        band = f"mean of {n} seeds, band = 95% CI" if n > 1 else "1 seed"
        ax.set(xlabel="optimizer step", ylabel="nats" if "entropy" in title else "%", title=f"{title}: {band}")
        finish_plot(fig, ax, out / name)
        made.append(name)
    return made


def run_json(r: Result) -> dict:
    return {"method": r.plan.method, "seed": r.plan.seed, "dir": str(r.plan.dir), "wall_s": r.wall_s,
            "tokens": r.tokens, **{s: r.stat(s) for s in SPLITS}, "sft_start": r.plan.info or None,
            "entropy_end": entropy_end(r.run),
            "final_eval": {key: v for key, v in (r.run.evals[-1] if r.run.evals else {}).items()},
            "style_final": {b: {w: r.style(b, w) for w in ("expert_share", "acc_expert", "acc_other")} for b in SPLITS},
            "phases": {s: {n: getattr(ph, n) for n in ("shift", "readapt", "overfit")} for s, ph in r.phases.items()}}


def write_reference(out: Path, results: list[Result], base: dict) -> None:
    """reference/: GRPO seed 0's arguments, metrics and evaluations, for the test that a fresh checkout reproduces
    them (tests/integration/test_benchmark_reproduces.py); only for a base that ships (its sha256 recorded)."""
    ref = next((r for r in results if r.plan.method == "GRPO" and r.plan.seed == 0), None)
    if ref is None or not base["recorded"]:
        return
    d = out / "reference"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "eval.jsonl"):
        shutil.copyfile(ref.plan.dir / name, d / name)
    (d / "run.json").write_text(json.dumps({
        "method": "GRPO", "seed": 0, "base_folder": Path(base["folder"]).name, "base_sha256": base["sha256"],
        "args": [x for x in ref.plan.args if not x.startswith("run.output_dir=")]}, indent=1))


def report(a: argparse.Namespace, results: list[Result], wall: float, model: str, server: WarmServer,
           base: dict) -> None:
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    groups = by_method(results)
    plots = plot_curves(groups, out)
    k = results[0].k
    sweep = json.loads((a.sweep / "sweep.json").read_text()) if a.sweep else None
    cells_note = ("Cells: mean ± half-width of the 95% Student-t interval over seeds. " if a.seeds > 1 else
                  "**One seed: no intervals; the differences below are not claims.** ")
    lrs = sweep["chosen"] if sweep else None
    md = ["# Method comparison on the card-sum task: " + ("math" if a.setting == "math" else "tool-use")
          + " regime", "",
          f"Setting `{a.setting}` (docs/benchmark.md#two-settings). {len(groups)} methods x {a.seeds} seed(s) (seeds "
          f"{a.seed_offset}..{a.seed_offset + a.seeds - 1}), {a.steps} optimizer steps each, evaluations at steps "
          f"0, {', '.join(map(str, eval_points(a.steps)))}: validation ID hands, test ID hands (rule J/Q/K = 10) "
          f"and test OOD hands (rule J/Q/K = 11/12/13, at least one face card), avg@{k} at temperature 1.0, in %. "
          f"{cells_note}Final = the last evaluation; val-selected = test accuracy at the step with the highest "
          "validation accuracy (never step 0; the steps per seed in their column); AUC = trapezoidal mean of the "
          "test curve after step 0. The best test evaluation is only in results.json, labelled optimistic.", "",
          "Learning rates: " + (f"from the sweep `{a.sweep}` (seed {sweep.get('seed')}, selected on validation): "
                                + ", ".join(f"{m} {c['lr']:g}" + (f" (window {c['decay_steps']})"
                                                                   if "decay_steps" in c else "")
                                            for m, c in lrs.items()) if lrs else "the recipes' (no sweep given)")
          + ". SFT-then-RL: SFT's run and learning rate, then GRPO's.", "",
          *main_table(groups), "", *starts(groups),
          "## Comparisons (95% CI of the difference)", "",
          "Paired over seeds where both methods ran the same seeds (same seed = same data order and evaluation "
          "seeds, so the noise they share cancels; Student t on seeds - 1 df), with Welch's unpaired interval "
          "beside it; the sentence follows the paired one. Welch alone otherwise.", "",
          "Final accuracy (the primary comparison):", "", *sentences(groups, "final"), "",
          "Validation-selected accuracy:", "", *sentences(groups, "selected"), "",
          f"Ranking by mean ID final: {ranking(groups, 'id')}.  ",
          f"Ranking by mean OOD final: {ranking(groups, 'ood')}.", "",
          "## Setting checks", "", *checks(groups, a.steps, sweep, a.setting), "",
          "## The paper's other claims (final evaluation; mean ± 95% CI over seeds)", "",
          *claims_table(groups, k), "",
          *(["## Reproduction", "", *reproduction(groups, a.compare), ""] if a.compare else []),
          "## Phases per run (chord.analysis.phases: the step where each starts; — = not detected; runs "
          "without SFT steps have none)", "", *phase_rows(results), "", "## Plots", "",
          *[f"![{p}]({p})" for p in plots], ""]
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps([run_json(r) for r in results], indent=1))
    write_reference(out, results, base)
    runs = ["| run | finished (UTC) | code | attempts | launch | wall time (s) | note |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        d = r.done
        runs.append(f"| {r.plan.name} | {d.get('finished', '?')} | {d.get('commit', '?')} | {d.get('attempts', '?')} "
                    f"| {d.get('launch', 'subprocess')} | {d['wall_s']:.0f} | {d.get('note', '')} |")
    (out / "provenance.md").write_text("\n".join([
        "# Provenance", "",
        f"- date: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; commit: {git_commit()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, {platform.platform()}",
        f"- command: python benchmarks/method_comparison.py {' '.join(sys.argv[1:])}",
        f"- setting: {a.setting}; base model: {model}; runs in {a.runs}",
        f"- base model weights: {base['folder'] / 'model.safetensors'}, sha256 {base['sha256']}"
        + (" (checked: the sha256 its chord_build.json records)" if base["recorded"] else " (built here: no recorded "
           "sha256 to check it against)"),
        f"- sweep: {a.sweep or 'none (the recipes learning rates)'}",
        f"- wall time of this invocation: {wall:.0f} s (finished runs skipped on a rerun are not in it); "
        f"sum of run wall times: {sum(r.done['wall_s'] for r in results):.0f} s (SFT-then-RL arms: their own steps); "
        f"the default five methods' runs: {sum(r.done['wall_s'] for r in results if r.plan.method in METHODS):.0f} s",
        "- launch: " + (f"runs forked from a server that imported the stack once in {server.import_s:.0f} s (in no "
                        "run's wall time); " if server.import_s else f"fresh processes ({server.fallback}); "
                        if server.fallback else "no run started in this invocation; ")
        + "warm-launched runs start ~15 s sooner, with the same numbers (chord.distributed.warm_launch)",
        "",
        "## Runs (code = the commit each run was started at, a resumed run its last start; launch: warm = forked "
        "from the server, subprocess = a fresh process)", "", *runs, ""]))
