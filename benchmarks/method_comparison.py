"""CHORD-mu / CHORD-phi vs SFT-then-RL vs SFT vs GRPO on the card-sum task, in the paper's protocol: a validation
split for every selection, learning rates from one sweep (benchmarks/lr_sweep.py), seeds, paired 95% CIs.

    python benchmarks/method_comparison.py [--setting math|tool] [--seeds 3] [--seed-offset 0] [--steps 60]
    python benchmarks/method_comparison.py --quick      # CI: 1 seed, 6 steps, a quickly built base model

Settings (docs/benchmark.md#two-settings): `math` (default) starts from a base pretrained also on plain-number sums
worked step by step, the paper's math regime (SFT beats GRPO); `tool` starts from the shipped base, which never
saw that style, the paper's tool-use regime. Every method gets the same budget of `--steps` optimizer steps and
the same expert demonstrations (builtin:cards_train); their wall time and tokens differ and are reported.
SFT-then-RL reuses the SFT run of its seed: GRPO from SFT's validation-best checkpoint among the steps up to half
the budget (never step 0), for the rest of the budget. Evaluations (validation ID, test ID, test OOD) at steps
0, N/12, N/6, N/3, 2N/3, N. Each (method, seed) is an ordinary `chord/train.py` run under RUNS/<method>/seed<s>;
a killed benchmark re-run with the same arguments skips finished runs and resumes the interrupted one from its
checkpoint. One progress bar covers the grid.

Writes OUT/ (benchmarks/comparison_report.py): results.md, results.json, plots and provenance.md.
Model, task and design: docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/method_comparison.py`: sys.path[0] is benchmarks/
    sys.path.insert(0, str(ROOT))

from chord.analysis.runs import read_jsonl  # noqa: E402
from chord.checkpoint.hub import git_commit as hub_git_commit  # noqa: E402
from chord.tasks.cards import N_EXPERT  # noqa: E402

if TYPE_CHECKING:  # make_server imports it: chord.distributed imports torch (~2 s), which this client never uses
    from chord.distributed.warm_launch import WarmServer


@dataclass(frozen=True)
class Method:
    """A method of the grid: a recipe, overrides, and for SFT-then-RL arms the SFT checkpoint it starts from."""

    recipe: str
    overrides: tuple[str, ...] = ()
    after_sft: str | None = None  # "best": SFT's validation-best checkpoint (steps <= N/2); "light": ~1 epoch
    lr_of: str | None = None  # whose swept learning rate it uses (None: its own)
    note: str = ""


METHODS = {  # label -> method; the order of the table (the default grid)
    "SFT": Method("recipes/cards_sft.yaml"),
    "GRPO": Method("recipes/cards_grpo.yaml"),
    "SFT-then-RL": Method("recipes/cards_grpo.yaml", after_sft="best", lr_of="GRPO",
                          note="GRPO from SFT's validation-best checkpoint (the paper's SFT-best + RL)"),
    "CHORD-mu": Method("recipes/cards_chord_mu.yaml"),
    "CHORD-phi": Method("recipes/cards.yaml"),
}
EXTRA_METHODS = {  # --methods may name these too: the paper's second SFT-then-RL arm and one-seed ablations
    "SFT-light-then-RL": Method("recipes/cards_grpo.yaml", after_sft="light", lr_of="GRPO",
                                note="GRPO from SFT's checkpoint nearest one epoch (the paper's SFT-light + RL)"),
    "CHORD-mu-noRL": Method("recipes/cards_chord_mu.yaml", ("trainer.prompts_per_step=0",), lr_of="CHORD-mu",
                            note="CHORD-mu's mu schedule and rows without rollouts: its SFT half alone"),
    "SFT-muLR": Method("recipes/cards_sft.yaml", lr_of="CHORD-mu",
                       note="SFT at CHORD-mu's learning rate and rows: what CHORD-mu's SFT half would do alone"),
    "mu0.02": Method("recipes/cards.yaml", ("algorithm.sft_weight=none", "algorithm.mu.peak=0.02",
                                            "algorithm.mu.valley=0.02"), lr_of="CHORD-phi", note="fixed mu, no phi"),
    "mu0.1": Method("recipes/cards.yaml", ("algorithm.sft_weight=none",), lr_of="CHORD-phi", note="fixed mu, no phi"),
    "mu0.5": Method("recipes/cards.yaml", ("algorithm.sft_weight=none", "algorithm.mu.peak=0.5",
                                           "algorithm.mu.valley=0.5"), lr_of="CHORD-phi", note="fixed mu, no phi"),
    "CHORD-IS": Method("recipes/cards.yaml", ("algorithm.sft_weight=is",), lr_of="CHORD-phi",
                       note="mu 0.1 with the importance-sampling token weight p instead of phi"),
}
ALL_METHODS = {**METHODS, **EXTRA_METHODS}
# math: the share of the base's pretraining rows that are plain-number sums worked step by step, chosen by the
# calibration in docs/benchmark.md#two-settings; tool: the shipped base (model.path=cards)
SETTINGS = {"math": 0.4, "tool": 0.0}
VAL_HANDS = 100  # builtin:cards_val; the math base never pretrains on them (chord.models.cards held_out_val)
SPLITS = ("val", "id", "ood")  # validation ID, test ID, test OOD
SOURCES = {"val": "builtin:cards_val", "id": "builtin:cards", "ood": "builtin:cards_ood"}
TUNING_SEED = 100  # benchmarks/lr_sweep.py: disjoint from the reported seeds
PRELOAD = ["chord.train", "chord.build", "chord.checkpoint", "chord.evaluation", "chord.learner.deepspeed_learner",
           "chord.rollout.vllm_engine", "vllm.entrypoints.llm", "transformers.models.auto.tokenization_auto",
           "transformers.models.auto.modeling_auto"]  # what every run imports (measured: cProfile of a run)
DONE = "benchmark_done.json"
INIT = "sft_init"  # an SFT-then-RL run's starting checkpoint, exported from the SFT run (with init.json)
POLL_S = 2.0  # how often the progress bar reads the running run's metrics


def eval_points(steps: int) -> list[int]:
    """Evaluation steps after 0: dense early, where SFT's shift happens (N/12, N/6, N/3), then 2N/3 and N."""
    return sorted({max(1, round(steps * f)) for f in (1 / 12, 1 / 6, 1 / 3, 2 / 3)} | {steps})


def sft_candidates(steps: int) -> list[int]:
    """The SFT checkpoints an SFT-then-RL run may start from: evaluations up to N/2, and N/2 itself."""
    return sorted({p for p in eval_points(steps) if p <= steps // 2} | {max(1, steps // 2)})


@dataclass
class Plan:
    method: str
    seed: int
    dir: Path
    args: list[str]
    steps: int
    prepare: Callable[[WarmServer, Path], list[str]] | None = None  # after_sft: the args once SFT has run
    info: dict = field(default_factory=dict)  # after_sft: init.json (the SFT step it starts from)

    @property
    def name(self) -> str:
        return f"{self.method}/seed{self.seed}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", choices=list(SETTINGS), default="math",
                   help="math: a base that has seen worked sums (default); tool: the shipped base")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0): seeds are offset..offset+n-1")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run, every method (default 60)")
    p.add_argument("--k", type=int, default=4, help="samples per evaluation problem (avg@k)")
    p.add_argument("--eval-problems", type=int, default=None, help="the first N problems of each split (all: 100)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(ALL_METHODS))
    p.add_argument("--sweep", type=Path, default=None,
                   help="a benchmarks/lr_sweep.py results folder: its learning rates (and CHORD-mu's window) override "
                        "the recipes', and its CHORD-mu precondition is reported (default: the newest "
                        "benchmarks/results/lr_sweep_math_* folder, if any; 'none': the recipes' values)")
    p.add_argument("--worked", type=float, default=None,
                   help="the math base's share of worked plain-number sums (default: the calibrated one)")
    p.add_argument("--base-steps", type=int, default=None, help="pretraining steps of the base (default: 1000)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache/chord",
                   help="model.cache_dir: the base model and task files (default .cache/chord)")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default runs/method-comparison-<setting>)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/method_comparison_<setting>_<date>)")
    p.add_argument("--quick", action="store_true",
                   help="CI size: 1 seed, 6 steps, 16 problems x 2 per split, a small base pretrained 400 steps")
    p.add_argument("--compare", type=Path, default=None,
                   help="another grid's results folder (e.g. other seeds): is its ranking reproduced here?")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--no-warm", action="store_true",
                   help="start every run as a fresh process instead of forking it from a warm server (slower)")
    p.add_argument("--fake-trainer", default=str(ROOT / "chord/train.py"), help=argparse.SUPPRESS)  # tests
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.steps, a.k = 1, 6, 2
        a.eval_problems = a.eval_problems or 16
        a.base_steps = a.base_steps or 400  # 60 steps: reward 0 in every rollout, no GRPO gradient
    if a.steps < 4 or a.seeds < 1:
        p.error("--steps >= 4 and --seeds >= 1")
    if any(ALL_METHODS[m].after_sft for m in a.methods) and "SFT" not in a.methods:
        p.error("SFT-then-RL arms start from the SFT runs: add SFT to --methods")
    a.worked = SETTINGS[a.setting] if a.worked is None else a.worked
    a.sweep = default_sweep(a.steps) if a.sweep is None else None if str(a.sweep) == "none" else a.sweep
    suffix = "-quick" if a.quick else ""
    a.runs = a.runs or ROOT / f"runs/method-comparison-{a.setting}{suffix}"
    a.out = a.out or ROOT / f"benchmarks/results/method_comparison_{a.setting}_{date.today():%Y-%m-%d}"
    return a


def default_sweep(steps: int) -> Path | None:
    """The newest committed math sweep made at this step count (another budget has no tuned rates: the recipes')."""
    found = [f.parent for f in sorted((ROOT / "benchmarks/results").glob("lr_sweep_math_*/sweep.json"))
             if json.loads(f.read_text()).get("steps") == steps]
    return found[-1] if found else None


def swept(sweep: Path | None, steps: int) -> dict[str, dict]:
    """{method: {"lr": ..., maybe "decay_steps": ...}} chosen by the sweep (benchmarks/lr_sweep.py), or {}."""
    if sweep is None:
        return {}
    f = sweep / "sweep.json"
    if not f.is_file():
        raise SystemExit(f"method_comparison: --sweep {sweep} has no sweep.json (run benchmarks/lr_sweep.py)")
    js = json.loads(f.read_text())
    if js.get("steps") != steps:
        raise SystemExit(f"method_comparison: --sweep {sweep} tuned {js.get('steps')}-step runs, not {steps}: "
                         "pass --sweep none or a sweep of this budget")
    return js["chosen"]


QUICK_BASE = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "batch": 32}


def base_model(a: argparse.Namespace) -> str:
    """The setting's base: `cards` (shipped) for tool, a base built here (cached) for math, --base-steps, --quick."""
    if a.base_steps is None and not a.worked:
        return "cards"
    from chord.models.cards import build_cards_model

    steps = {"steps": a.base_steps} if a.base_steps else {}
    extra = {"worked": a.worked, "held_out_val": VAL_HANDS} if a.worked else {}
    return str(build_cards_model(a.cache_dir, log_every=100, **steps, **extra, **(QUICK_BASE if a.quick else {})))


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


def common_args(a: argparse.Namespace, model: str, splits: tuple[str, ...] = SPLITS) -> list[str]:
    """What every run of a grid (or of the sweep: validation only) shares."""
    return [f"model.path={model}", f"model.cache_dir={a.cache_dir}", "trainer.keep_last=1",
            f"trainer.save_every={max(1, a.steps // 6)}", "logging.progress_bar=false", f"eval.k={a.k}",
            "eval.every=0", "eval.at_start=true", f"eval.at_steps={json.dumps(eval_points(a.steps)[:-1])}",
            f"eval.best_metric=val/avg@{a.k}", "eval.best_includes_start=false", "eval.save_samples=true",
            "eval.benchmarks=" + json.dumps([{"name": s, "source": SOURCES[s], "k": a.k,
                                              "max_problems": a.eval_problems} for s in splits])]


def method_args(name: str, a: argparse.Namespace, choice: dict[str, dict]) -> list[str]:
    """The method's own overrides: the budget, its (swept) learning rate and CHORD-mu's window."""
    m = ALL_METHODS[name]
    out = [*m.overrides]
    c = choice.get(m.lr_of or name, {})
    if "lr" in c:
        out.append(f"trainer.lr={c['lr']}")
    raw = yaml.safe_load((ROOT / m.recipe).read_text())
    if raw.get("algorithm", {}).get("mu", {}).get("decay_steps"):  # CHORD-mu: the window (swept, else N/2)
        out.append(f"algorithm.mu.decay_steps={c.get('decay_steps', max(1, a.steps // 2))}")
    if name == "SFT":  # every SFT-then-RL start candidate is evaluated and kept
        cands = sft_candidates(a.steps)
        every = math.gcd(*cands)
        out += [f"eval.at_steps={json.dumps(sorted(set(eval_points(a.steps)[:-1]) | set(cands)))}",
                f"trainer.save_every={every}", f"trainer.keep_last={a.steps // every}"]
    return out


def plan(a: argparse.Namespace, model: str, choice: dict[str, dict] | None = None) -> list[Plan]:
    choice = swept(a.sweep, a.steps) if choice is None else choice
    common = common_args(a, model)
    plans = []
    for seed in range(a.seed_offset, a.seed_offset + a.seeds):
        for m in a.methods:
            d = a.runs / m / f"seed{seed}"
            recipe = str(ROOT / ALL_METHODS[m].recipe)
            args = [recipe, f"run.output_dir={d}", f"run.seed={seed}", *common, *method_args(m, a, choice)]
            if ALL_METHODS[m].after_sft is None:
                plans.append(Plan(m, seed, d, [*args, f"trainer.steps={a.steps}"], a.steps))
            else:
                plans.append(Plan(m, seed, d, args, a.steps, prepare=after_sft(a, m, seed, args)))
    return plans


def sft_start(a: argparse.Namespace, method: str, seed: int) -> dict:
    """{"sft_step", "val", "candidates"}: where an SFT-then-RL arm of this seed starts, read from the SFT run."""
    evals, _ = read_jsonl(a.runs / "SFT" / f"seed{seed}" / "eval.jsonl")
    key = f"val/avg@{a.k}"
    val = {int(r["step"]): r[key] for r in evals if key in r}
    cands = [c for c in sft_candidates(a.steps) if c in val]
    if not cands:
        raise SystemExit(f"method_comparison: {method}/seed{seed}: the SFT run has no validation evaluation at "
                         f"steps {sft_candidates(a.steps)}")
    if ALL_METHODS[method].after_sft == "light":  # about one epoch of the expert rows (the paper's SFT-light)
        epoch = N_EXPERT / expert_per_step()
        k = max([c for c in cands if c <= epoch] or cands[:1])
    else:  # SFT-best on validation (ties: the earlier), never step 0
        k = max(cands, key=lambda c: (val[c], -c))
    return {"sft_step": k, "val": val[k], "candidates": {str(c): val[c] for c in cands}}


def expert_per_step() -> int:
    return int(yaml.safe_load((ROOT / METHODS["SFT"].recipe).read_text())["trainer"]["expert_per_step"])


def after_sft(a: argparse.Namespace, method: str, seed: int, args: list[str]
              ) -> Callable[[WarmServer, Path], list[str]]:
    """The run's arguments once the SFT run of its seed has finished: GRPO from the exported SFT checkpoint for
    the rest of the budget, evaluated at the grid's evaluation steps (shifted to its own step count)."""

    def prepare(server: WarmServer, log: Path) -> list[str]:
        d = a.runs / method / f"seed{seed}"
        start = sft_start(a, method, seed)
        k = start["sft_step"]
        init = d / INIT
        d.mkdir(parents=True, exist_ok=True)
        if not (init / "config.json").is_file():
            export_checkpoint(server, a.runs / "SFT" / f"seed{seed}" / "checkpoints" / f"step_{k}", init, log)
        (d / "init.json").write_text(json.dumps(start))
        rest = [p - k for p in eval_points(a.steps)[:-1] if p > k]
        return [x if not x.startswith("model.path=") else f"model.path={init}" for x in args] + [
            f"trainer.steps={a.steps - k}", "eval.at_start=false", f"eval.at_steps={json.dumps(rest)}"]

    return prepare


def export_checkpoint(server: WarmServer, ckpt: Path, out: Path, log: Path) -> None:
    """chord.export of one SFT checkpoint (a save_pretrained folder the GRPO run loads as model.path)."""
    if not ckpt.is_dir():
        raise SystemExit(f"method_comparison: {ckpt} is missing (the SFT run keeps every candidate checkpoint)")
    proc = server.start(["-m", "chord.export", str(ckpt), str(out)], log)
    if proc.wait() != 0:
        raise SystemExit(f"method_comparison: exporting {ckpt} failed (log: {log})")


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
    own = p.steps - p.info.get("sft_step", 0)  # an SFT-then-RL arm runs the budget less its SFT steps
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
                bar.update(base + min(steps_done(p.dir), own) - bar.n)
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
    bar.update(base + own - bar.n)
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
    for p in plans:  # first the runs the arms read: one made differently is named as such, not as the arm's error
        if p.prepare is None and (p.dir / DONE).is_file():
            check_made_with(p, p.dir / DONE)
    for p in plans:  # an SFT-then-RL arm whose SFT run is done (its own may be too) gets its arguments now
        if p.prepare is not None and (p.dir / DONE).is_file():
            p.args, p.info = p.prepare(server, log), json.loads((p.dir / "init.json").read_text())
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
        if p.prepare is not None:
            p.args = p.prepare(server, log)
            p.info = json.loads((p.dir / "init.json").read_text())
            bar.update(p.info["sft_step"])  # steps it takes over from the SFT run
        state = execute(p, script, server, bar, log)
        (p.dir / DONE).write_text(json.dumps({**state,
                                              "finished": datetime.now(UTC).isoformat(timespec="seconds")}))
    bar.close()


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
    from benchmarks.comparison_report import collect, report

    report(a, collect(plans, a.k), time.perf_counter() - t0, model, server, base)
    print(f"method_comparison: {len(plans)} runs -> {a.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
