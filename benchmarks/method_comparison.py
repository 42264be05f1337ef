"""CHORD-mu / CHORD-phi vs SFT-then-RL vs SFT vs GRPO on the card-sum task: seeds, 95% CIs, ID and OOD.

    python benchmarks/method_comparison.py [--seeds 3] [--seed-offset 0] [--steps 60] [--out DIR] [--runs DIR]
    python benchmarks/method_comparison.py --quick      # CI: 1 seed, 6 steps, a quickly built base model

Every method gets the same budget: `--steps` optimizer steps (SFT-then-RL: half SFT, then GRPO from the SFT
stage's best ID evaluation) and the same expert demonstrations (builtin:cards); their wall time and tokens
differ and are reported. Each (method, seed) is an ordinary `chord/train.py` run under RUNS/<method>/seed<s>;
a killed benchmark re-run with the same arguments skips finished runs and resumes the interrupted one from its
checkpoint (trainer.save_every). One progress bar covers the whole grid.

Writes OUT/: results.md (ID / OOD avg@k at start, best, final: mean +- 95% CI over seeds; wall time, tokens;
phases per run; the setting checks; one sentence per comparison), results.json (every number per run),
eval_id.png / eval_ood.png / train_reward.png (mean over seeds with a 95% band) and provenance.md.
Model, task and design: docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chord.analysis.phases import Phases  # noqa: E402
from chord.analysis.run_phases import phases_from_rows  # noqa: E402
from chord.analysis.runs import Run, eval_stats, load_run, read_jsonl, series  # noqa: E402
from chord.analysis.seed_stats import MeanCI, diff_ci, mean_ci, paired_diff_ci, verdict  # noqa: E402
from chord.checkpoint.hub import git_commit as hub_git_commit  # noqa: E402

if TYPE_CHECKING:  # make_server imports it: chord.distributed imports torch (~2 s), which this client never uses
    from chord.distributed.warm_launch import WarmServer

ROOT = Path(__file__).resolve().parents[1]

METHODS = {  # label -> recipe; the order of the table
    "SFT": "recipes/cards_sft.yaml",
    "GRPO": "recipes/cards_grpo.yaml",
    "SFT-then-RL": "recipes/cards_sft_then_rl.yaml",
    "CHORD-mu": "recipes/cards_chord_mu.yaml",
    "CHORD-phi": "recipes/cards.yaml",
}
SPLITS = ("id", "ood")
PRELOAD = ["chord.train", "chord.build", "chord.checkpoint", "chord.evaluation", "chord.learner.deepspeed_learner",
           "chord.rollout.vllm_engine", "vllm.entrypoints.llm", "transformers.models.auto.tokenization_auto",
           "transformers.models.auto.modeling_auto"]  # what every run imports (measured: cProfile of a run)
DONE = "benchmark_done.json"
POLL_S = 2.0  # how often the progress bar reads the running run's metrics


@dataclass
class Plan:
    method: str
    seed: int
    dir: Path
    args: list[str]
    steps: int

    @property
    def name(self) -> str:
        return f"{self.method}/seed{self.seed}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0): seeds are offset..offset+n-1")
    p.add_argument("--steps", type=int, default=120, help="optimizer steps per run, every method (default 120)")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--k", type=int, default=4, help="samples per evaluation problem (avg@k)")
    p.add_argument("--eval-problems", type=int, default=None, help="the first N problems of each split (all: 100)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--base-steps", type=int, default=None,
                   help="pretraining steps of the base model (default: the built-in `cards` model's)")
    p.add_argument("--base-worked", type=float, default=0.0,
                   help="pilot: fraction of base pretraining rows that are plain-number sums worked step by step")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/chord",
                   help="model.cache_dir: the base model and task files (default .cache/chord)")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default runs/method-comparison)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/method_comparison_<date>)")
    p.add_argument("--quick", action="store_true",
                   help="CI size: 1 seed, 6 steps, eval every 3 on 16 problems x 2, a small base pretrained 400 steps")
    p.add_argument("--compare", type=Path, default=None,
                   help="another grid's results folder (e.g. other seeds): is its ranking reproduced here?")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--no-warm", action="store_true",
                   help="start every run as a fresh process instead of forking it from a warm server (slower)")
    p.add_argument("--fake-trainer", default=str(ROOT / "chord/train.py"), help=argparse.SUPPRESS)  # tests
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.steps, a.eval_every, a.k = 1, 6, 3, 2
        a.eval_problems = a.eval_problems or 16
        a.base_steps = a.base_steps or 400  # 60 steps: reward 0 in every rollout, no GRPO gradient
    if a.steps < 2 or a.seeds < 1 or a.eval_every < 1:
        p.error("--steps >= 2, --seeds >= 1 and --eval-every >= 1")
    a.runs = a.runs or ROOT / ("runs/method-comparison-quick" if a.quick else "runs/method-comparison")
    a.out = a.out or ROOT / f"benchmarks/results/method_comparison_{date.today():%Y-%m-%d}"
    return a


QUICK_BASE = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "batch": 32}


def base_model(a: argparse.Namespace) -> str:
    """`cards` (built on first use by chord.train), or a base model built here (--base-steps, --quick)."""
    if a.base_steps is None and not a.base_worked:
        return "cards"
    from chord.models.cards import build_cards_model

    steps = {"steps": a.base_steps} if a.base_steps else {}
    return str(build_cards_model(a.cache_dir, worked=a.base_worked, log_every=100, **steps,
                                 **(QUICK_BASE if a.quick else {})))


def base_weights(model: str, cache_dir: Path) -> dict:
    """{folder, sha256, recorded}: the base model folder the runs load (resolved as chord/train.py resolves
    model.path) and the sha256 of its model.safetensors, which makes the recorded results traceable to the exact
    weights. Where the folder's chord_build.json records a sha256 (the shipped base's; recorded = True) the two must
    agree: weights that changed since they were recorded stop the grid before it runs."""
    from chord.models.cards import weights_sha256
    from chord.models.load import resolve_model_path

    folder = Path(resolve_model_path(model, cache_dir))
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"method_comparison: base model {folder} has no model.safetensors to hash")
    sha = weights_sha256(folder)
    info = folder / "chord_build.json"
    recorded = json.loads(info.read_text()).get("weights_sha256") if info.is_file() else None
    if recorded is not None and recorded != sha:
        raise SystemExit(f"method_comparison: base model {folder}: model.safetensors has sha256 {sha}, but "
                         f"chord_build.json records {recorded}; restore the weights or rebuild them "
                         "(python -m chord.models.cards --ship)")
    return {"folder": folder, "sha256": sha, "recorded": recorded is not None}


def _stage_override(recipe: Path, steps: int) -> str:
    """The recipe's `stages` with their steps scaled to the budget (SFT first half, RL the rest)."""
    stages = yaml.safe_load(recipe.read_text())["stages"]
    total = sum(s["trainer"]["steps"] for s in stages)
    done = 0
    for s in stages[:-1]:
        s["trainer"]["steps"] = max(1, round(steps * s["trainer"]["steps"] / total))
        done += s["trainer"]["steps"]
    stages[-1]["trainer"]["steps"] = steps - done
    return "stages=" + json.dumps(stages)


def plan(a: argparse.Namespace, model: str) -> list[Plan]:
    common = [f"model.path={model}", f"model.cache_dir={a.cache_dir}", f"trainer.save_every={max(1, a.eval_every)}",
              "trainer.keep_last=1", "logging.progress_bar=false", f"eval.every={a.eval_every}", f"eval.k={a.k}",
              f"eval.best_metric=id/avg@{a.k}"]
    common.append("eval.benchmarks=" + json.dumps(  # a list: replaced whole
        [{"name": s, "source": f"builtin:{'cards' if s == 'id' else 'cards_ood'}", "k": a.k,
          "max_problems": a.eval_problems} for s in SPLITS]))
    plans = []
    for seed in range(a.seed_offset, a.seed_offset + a.seeds):
        for m in a.methods:
            recipe = ROOT / METHODS[m]
            raw = yaml.safe_load(recipe.read_text())
            budget = [_stage_override(recipe, a.steps)] if "stages" in raw else [f"trainer.steps={a.steps}"]
            if raw.get("algorithm", {}).get("mu", {}).get("decay_steps"):  # CHORD-mu: decay over the first half
                budget.append(f"algorithm.mu.decay_steps={max(1, a.steps // 2)}")
            d = a.runs / m / f"seed{seed}"
            plans.append(Plan(m, seed, d, [str(recipe), f"run.output_dir={d}", f"run.seed={seed}", *common, *budget],
                              a.steps))
    return plans


def steps_done(d: Path) -> int:
    """Steps logged so far (all stages): the progress bar's position."""
    files = sorted(d.glob("stage*/metrics.jsonl")) or [d / "metrics.jsonl"]
    return sum(len(read_jsonl(f)[0]) for f in files)


def git_commit() -> str:
    """HEAD's short hash, "+dirty" with uncommitted changes to tracked files; "?" without git."""
    return hub_git_commit(ROOT) or "?"


def made_with(p: Plan) -> dict:
    """What a run is made from: its arguments (less its folder) and its recipe's text."""
    return {"args": [x for x in p.args if not x.startswith("run.output_dir=")],
            "recipe_sha256": hashlib.sha256(Path(p.args[0]).read_bytes()).hexdigest()}


def check_made_with(p: Plan, state_f: Path) -> None:
    """A finished or half-done run is reused only if it was made from the same recipe and arguments: a changed
    recipe must never be reported with a stale run's numbers, nor resumed on top of one."""
    if not state_f.is_file():
        return
    was, now = json.loads(state_f.read_text()).get("made_with"), made_with(p)
    if was == now:
        return
    if was is None:
        why = "it predates this check"
    elif was["args"] == now["args"]:
        why = "its recipe changed"
    else:
        old, new = (dict(x.split("=", 1) if "=" in x else ("recipe", x) for x in d["args"]) for d in (was, now))
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        why = "other arguments: " + "; ".join(f"{k} was {old.get(k, '-')[:40]}, now {new.get(k, '-')[:40]}"
                                               for k in keys[:3])
    raise SystemExit(f"method_comparison: {p.dir} was made differently ({why}); delete it or pass another --runs")


def execute(p: Plan, script: str, server: WarmServer, bar: tqdm, log: Path) -> dict:
    """Run (or resume) one training; returns {"wall_s": ...} accumulated over attempts."""
    state_f = p.dir / "benchmark_attempts.json"
    p.dir.mkdir(parents=True, exist_ok=True)
    check_made_with(p, state_f)
    state = json.loads(state_f.read_text()) if state_f.is_file() else {"wall_s": 0.0, "attempts": 0}
    state["made_with"], state["commit"] = made_with(p), git_commit()
    t0, base = time.perf_counter(), bar.n
    with open(log, "a") as out:
        out.write(f"\n$ {server.python} {script} {' '.join(p.args)}\n")
    proc = server.start([script, *p.args], log)
    state["launch"] = "subprocess" if isinstance(proc, subprocess.Popen) else "warm"
    try:
        while True:
            try:
                proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                bar.update(base + min(steps_done(p.dir), p.steps) - bar.n)
    except BaseException:  # Ctrl-C: stop the run; it resumes from its checkpoint next time
        proc.terminate()
        proc.wait()
        raise
    finally:
        state["wall_s"] += time.perf_counter() - t0
        state["attempts"] += 1
        state_f.write_text(json.dumps(state))
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"method_comparison: {p.name} failed (exit {proc.returncode}): {tail[0]} (log: {log})")
    bar.update(base + p.steps - bar.n)
    return state


def make_server(a: argparse.Namespace, log: Path) -> WarmServer:
    """Runs forked from one server that imported the stack (chord.distributed.warm_launch), or --no-warm: one
    fresh process each (the same numbers; ~15 s more per run here)."""
    from chord.distributed.warm_launch import WarmServer

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    real = Path(a.fake_trainer).resolve() == ROOT / "chord/train.py"
    server = WarmServer(a.python, PRELOAD if real else [], cwd=ROOT, env=env, log=log)
    if a.no_warm:
        server.fallback = "--no-warm"
    return server


def run_grid(plans: list[Plan], script: str, server: WarmServer, log: Path) -> None:
    finished = [p for p in plans if (p.dir / DONE).is_file()]
    for p in finished:
        check_made_with(p, p.dir / DONE)
    if len(finished) < len(plans):
        server.warm_up()
    # finished runs are the bar's starting point, so its rate and ETA count only the steps run now
    bar = tqdm(total=sum(p.steps for p in plans), initial=sum(p.steps for p in finished), desc="grid",
               unit="step", dynamic_ncols=True)
    for p in plans:
        if p in finished:
            continue
        bar.set_postfix_str(p.name)
        state = execute(p, script, server, bar, log)
        (p.dir / DONE).write_text(json.dumps({**state,
                                              "finished": datetime.now(UTC).isoformat(timespec="seconds")}))
    bar.close()


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Result:
    plan: Plan
    run: Run
    done: dict  # the run's benchmark_done.json: wall_s, attempts, commit, finished, note
    tokens: float
    phases: dict[str, Phases]

    @property
    def wall_s(self) -> float:
        return self.done["wall_s"]

    def stat(self, split: str) -> dict:
        return eval_stats(self.run, f"{split}/avg@{self.k}")

    @property
    def k(self) -> int:
        keys = [key for r in self.run.evals for key in r if key.startswith("id/avg@")]
        return int(keys[0].split("@")[1]) if keys else 0


def collect(plans: list[Plan]) -> list[Result]:
    out = []
    for p in plans:
        run = load_run(p.dir, p.name)
        tokens = sum(r.get("tokens/rollout", 0) + r.get("tokens/expert", 0) for r in run.rows)
        done = json.loads((p.dir / DONE).read_text())
        out.append(Result(p, run, done, tokens, phases_from_rows(run.evals, run.rows)))
    return out


def by_method(results: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault(r.plan.method, []).append(r)
    return out


def values(rs: list[Result], split: str, at: str) -> list[float]:
    return [v for r in rs if (v := r.stat(split)[at]) is not None]


def main_table(groups: dict[str, list[Result]]) -> list[str]:
    head = "| method | seeds | " + " | ".join(f"{s.upper()} {at}" for s in SPLITS for at in ("start", "best", "final"))
    lines = [head + " | wall time per run (s) | tokens per run (k) |",
             "|---" * (2 + 3 * len(SPLITS) + 2) + "|"]
    for m, rs in groups.items():
        cells = [mean_ci(values(rs, s, at)).fmt() for s in SPLITS for at in ("start", "best", "final")]
        wall = mean_ci([r.wall_s for r in rs]).fmt(scale=1.0, digits=0)
        tok = mean_ci([r.tokens / 1000 for r in rs]).fmt(scale=1.0, digits=0)
        lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + f" | {wall} | {tok} |")
    return lines


def phase_rows(results: list[Result]) -> list[str]:
    lines = ["| run | split | shift | readapt | overfit |", "|---|---|---|---|---|"]
    for r in results:
        for split in SPLITS:
            ph = r.phases.get(split)
            if ph is None:
                continue
            cell = [str(getattr(ph, n)) if getattr(ph, n) is not None else "—"
                    for n in ("shift", "readapt", "overfit")]
            lines.append(f"| {r.plan.name} | {split.upper()} | " + " | ".join(cell) + " |")
    return lines


def gains(rs: list[Result], split: str, at: str = "final") -> list[float]:
    return [r.stat(split)[at] - r.stat(split)["start"] for r in rs if r.stat(split)["start"] is not None]


def _box(ok: bool, n: int) -> str:
    return "- [ ] (one seed: no interval, not testable)" if n < 2 else f"- [{'x' if ok else ' '}]"


def checks(groups: dict[str, list[Result]]) -> list[str]:
    """The setting's promises (docs/benchmark.md), each measured here: pass or fail, with the numbers."""
    out = []
    if "GRPO" in groups:
        g = mean_ci(gains(groups["GRPO"], "id"))
        ok = g.n >= 2 and g.mean >= 0.10 and g.excludes_zero()
        out.append(f"{_box(ok, g.n)} GRPO raises held-out ID accuracy by >= 10 points with a 95% CI "
                   f"excluding 0: final - start = {g.fmt()} points.")
    if "SFT" in groups:
        rs = groups["SFT"]
        dips = [min(v for _, v in zip(*series(r.run.evals, f"id/avg@{r.k}"))) - r.stat("id")["start"] for r in rs]
        ups = gains(rs, "id", "best")
        d, u = mean_ci(dips), mean_ci(ups)
        shifted = sum(r.phases.get("id") is not None and r.phases["id"].shift is not None for r in rs)
        readapted = sum(r.phases.get("id") is not None and r.phases["id"].readapt is not None for r in rs)
        ok = d.n >= 2 and d.high < 0 and u.low > 0
        out.append(f"{_box(ok, d.n)} SFT first drops below the base on ID (lowest - start = {d.fmt()} "
                   f"points) and then recovers above it (best - start = {u.fmt()} points); phase labels: shift in "
                   f"{shifted}/{len(rs)} runs, readapt in {readapted}/{len(rs)}.")
        over = sum(r.phases.get("ood") is not None and r.phases["ood"].overfit is not None for r in rs)
        late = mean_ci([r.stat("ood")["final"] - r.stat("ood")["best"] for r in rs])
        out.append(f"- [{'x' if over else ' '}] SFT overfits OOD (held-out OOD accuracy falls from its peak while "
                   f"the expert loss keeps falling): overfit label in {over}/{len(rs)} runs; OOD final - best = "
                   f"{late.fmt()} points.")
    return out


def by_seed(rows: list[tuple[int, float | None]]) -> dict[int, float] | None:
    """{seed: value} from (seed, value) pairs; None when a seed repeats or lacks a value (nothing to pair)."""
    out = {seed: v for seed, v in rows if v is not None}
    return out if len(out) == len(rows) else None


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


def seeded(rs: list[Result], split: str, at: str = "final") -> dict[int, float] | None:
    return by_seed([(r.plan.seed, r.stat(split)[at]) for r in rs])


def sentences(groups: dict[str, list[Result]]) -> list[str]:
    pairs = [(a, b) for a in ("CHORD-mu", "CHORD-phi") for b in ("SFT-then-RL", "GRPO", "SFT")]
    out = []
    for a, b in [*pairs, ("SFT-then-RL", "GRPO")]:
        if a not in groups or b not in groups:
            continue
        for split in SPLITS:
            d, welch = paired_or_welch(seeded(groups[a], split), seeded(groups[b], split),
                               values(groups[a], split, "final"), values(groups[b], split, "final"))
            out.append("- " + verdict(d, a, b, f"{split.upper()} final accuracy", welch))
    return out


def ranking(groups: dict[str, list[Result]], split: str) -> str:
    means = sorted(((mean_ci(values(rs, split, "final")).mean, m) for m, rs in groups.items()), reverse=True)
    return " > ".join(f"{m} ({100 * v:.1f})" for v, m in means)


def reproduction(groups: dict[str, list[Result]], other: Path) -> list[str]:
    """Does this grid reproduce another's (e.g. other seeds') ranking? Final accuracy per method in both, the
    rankings, each swapped pair with its CI in both grids (paired over seeds within a grid,
    docs/benchmark.md#statistics), and whether each mean here lies in the other's CI (unpaired: other seeds)."""
    rows = json.loads((other / "results.json").read_text())
    there = {m: [r for r in rows if r["method"] == m] for m in groups}
    # each row has its seed (results.json since the first grid): the swaps below pair within a grid
    there_s = {m: {s: by_seed([(r["seed"], r[s]["final"]) for r in there[m]]) for s in SPLITS} for m in groups}
    seeds = sorted({r["seed"] for r in rows})
    out = [f"Against `{other}` (seeds {', '.join(map(str, seeds))}); final accuracy, mean ± 95% CI.", "",
           "| method | " + " | ".join(f"{s.upper()} here | {s.upper()} there" for s in SPLITS) + " |",
           "|---" * (1 + 2 * len(SPLITS)) + "|"]
    for m, rs in groups.items():
        cells = [c for s in SPLITS for c in (mean_ci(values(rs, s, "final")).fmt(),
                                             mean_ci([r[s]["final"] for r in there[m]]).fmt())]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append("")
    for s in SPLITS:
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


def plot_curves(groups: dict[str, list[Result]], out: Path) -> list[str]:
    made = []
    boundaries = {m: rs[0].run.boundaries for m, rs in groups.items() if rs[0].run.boundaries}
    for name, key_of, title in [
        *[(f"eval_{s}.png", (lambda r, s=s: f"{s}/avg@{r.k}"), f"held-out {s.upper()} accuracy (avg@k)")
          for s in SPLITS],
        ("train_reward.png", lambda r: "reward/mean", "training reward (rollouts)"),
    ]:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        drew = False
        for m, rs in groups.items():
            src = [dict(zip(*series(r.run.evals if name.startswith("eval") else r.run.rows, key_of(r))))
                   for r in rs]
            steps = sorted(set.intersection(*(set(s) for s in src))) if src else []
            if not steps:
                continue
            cis = [mean_ci([s[x] for s in src]) for x in steps]
            mean = [100 * c.mean for c in cis]
            line, = ax.plot(steps, mean, label=m, marker="o" if name.startswith("eval") else None, ms=3)
            if len(rs) > 1:
                ax.fill_between(steps, [100 * c.low for c in cis], [100 * c.high for c in cis],
                                color=line.get_color(), alpha=0.15, lw=0)
            for b, _ in boundaries.get(m, []):
                ax.axvline(b, color=line.get_color(), ls=":", lw=1)
            drew = True
        if not drew:
            plt.close(fig)
            continue
        n = max(len(rs) for rs in groups.values())
        band = f"mean of {n} seeds, band = 95% CI" if n > 1 else "1 seed"
        ax.set(xlabel="optimizer step", ylabel="%", title=f"{title}: {band}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def report(a: argparse.Namespace, results: list[Result], wall: float, model: str, server: WarmServer,
           base: dict) -> None:
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    groups = by_method(results)
    plots = plot_curves(groups, out)
    k = results[0].k
    cells = ("Cells: mean ± half-width of the 95% Student-t interval over seeds. " if a.seeds > 1 else
             "**One seed: no intervals; the differences below are not claims.** ")
    md = ["# Method comparison on the card-sum task", "",
          f"{len(groups)} methods x {a.seeds} seed(s) (seeds {a.seed_offset}..{a.seed_offset + a.seeds - 1}), "
          f"{a.steps} optimizer steps each, evaluation every {a.eval_every} steps: held-out ID hands (rule J/Q/K = 10) "
          f"and OOD hands (rule J/Q/K = 11/12/13, at least one face card), avg@{k} at temperature 1.0, in %. "
          f"{cells}Best = the highest evaluation "
          "(chosen on the test curve itself, so optimistic); final = the last. Setting: docs/benchmark.md.", "",
          *main_table(groups), "", "## Comparisons (final accuracy; 95% CI of the difference)", "",
          "Paired over seeds where both methods ran the same seeds (same seed = same data order and evaluation "
          "seeds, so the noise they share cancels; Student t on seeds - 1 df), with Welch's unpaired interval "
          "beside it; the sentence follows the paired one. Welch alone otherwise.", "",
          *sentences(groups), "", f"Ranking by mean ID final: {ranking(groups, 'id')}.  ",
          f"Ranking by mean OOD final: {ranking(groups, 'ood')}.", "", "## Setting checks", "", *checks(groups), "",
          *(["## Reproduction", "", *reproduction(groups, a.compare), ""] if a.compare else []),
          "## Phases per run (chord.analysis.phases: the step where each starts; — = not detected; runs "
          "without SFT steps have none)", "", *phase_rows(results), "", "## Plots", "",
          *[f"![{p}]({p})" for p in plots], ""]
    (out / "results.md").write_text("\n".join(md))
    js = [{"method": r.plan.method, "seed": r.plan.seed, "dir": str(r.plan.dir), "wall_s": r.wall_s,
           "tokens": r.tokens, **{s: r.stat(s) for s in SPLITS},
           "phases": {s: {n: getattr(ph, n) for n in ("shift", "readapt", "overfit")} for s, ph in r.phases.items()}}
          for r in results]
    (out / "results.json").write_text(json.dumps(js, indent=1))
    runs = ["| run | finished (UTC) | code | attempts | launch | wall time (s) | note |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        d = r.done
        runs.append(f"| {r.plan.name} | {d.get('finished', '?')} | {d.get('commit', '?')} | {d.get('attempts', '?')} "
                    f"| {d.get('launch', 'subprocess')} | {r.wall_s:.0f} | {d.get('note', '')} |")
    (out / "provenance.md").write_text("\n".join([
        "# Provenance", "",
        f"- date: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; commit: {git_commit()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, {platform.platform()}",
        f"- command: python benchmarks/method_comparison.py {' '.join(sys.argv[1:])}",
        f"- base model: {model}; runs in {a.runs}",
        f"- base model weights: {base['folder'] / 'model.safetensors'}, sha256 {base['sha256']}"
        + (" (checked: the sha256 its chord_build.json records)" if base["recorded"] else " (built here: no recorded "
           "sha256 to check it against)"),
        f"- wall time of this invocation: {wall:.0f} s (finished runs skipped on a rerun are not in it); "
        f"sum of run wall times: {sum(r.wall_s for r in results):.0f} s",
        "- launch: " + (f"runs forked from a server that imported the stack once in {server.import_s:.0f} s (in no "
                        "run's wall time); " if server.import_s else f"fresh processes ({server.fallback}); "
                        if server.fallback else "no run started in this invocation; ")
        + "warm-launched runs start ~15 s sooner, with the same numbers (chord.distributed.warm_launch)",
        "",
        "## Runs (code = the commit each run was started at, a resumed run its last start; launch: warm = forked "
        "from the server, subprocess = a fresh process)", "", *runs, ""]))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    model = base_model(a)
    base = base_weights(model, a.cache_dir)  # hashed (and checked) before any run starts
    plans = plan(a, model)
    a.runs.mkdir(parents=True, exist_ok=True)
    server = make_server(a, a.runs / "train.log")
    try:
        run_grid(plans, a.fake_trainer, server, a.runs / "train.log")
    finally:
        server.close()
    report(a, collect(plans), time.perf_counter() - t0, model, server, base)
    print(f"method_comparison: {len(plans)} runs -> {a.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
