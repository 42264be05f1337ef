"""Kill a tiny CHORD run with SIGKILL at random moments, resume it, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py --trials 4 --steps 12 [--ranks 2]

Each trial launches the run, waits until a random number of steps is logged, sleeps a random
fraction of a step (so the kill lands anywhere: rollout, backward, weight push, checkpoint save;
checkpoints are written every step) and SIGKILLs the whole process group; then relaunches the same
command until it finishes. A trial is exact when metrics.jsonl holds each step exactly once, and every
logged metric of every step (timings aside) and every final weight are bitwise equal to the reference run.
Writes a markdown table to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from chord.step_metrics import NOT_REPRODUCIBLE

ROOT = Path(__file__).resolve().parents[1]


def command(args: argparse.Namespace, out: Path) -> list[str]:
    launch = [sys.executable] if args.ranks == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                      "--nproc_per_node", str(args.ranks), "--master_port",
                                                      str(random.randint(20000, 40000))]
    return [*launch, "chord/train.py", "recipes/tiny.yaml", f"trainer.steps={args.steps}", "trainer.save_every=1",
            f"run.output_dir={out}", "logging.progress_bar=false", "trainer.prompts_per_step=8",
            "trainer.samples_per_prompt=4", "trainer.expert_per_step=8", "trainer.micro_batch_size=24", *args.set]


def logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def launch(args: argparse.Namespace, out: Path, kill_after: int | None, rng: random.Random) -> tuple[int, str]:
    """Run once; with kill_after, SIGKILL the process group once that many steps are logged."""
    where = "finished"
    with open(out.parent / f"{out.name}.log", "a") as log:
        p = subprocess.Popen(command(args, out), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        while p.poll() is None:
            if kill_after is not None and logged_steps(out) >= kill_after:
                time.sleep(rng.uniform(0.0, 0.5))  # somewhere inside the next step (or its checkpoint save)
                where = f"SIGKILL after step {logged_steps(out)} + part of the next"
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the kill itself, or leftovers of a finished run
        p.wait()
    return p.returncode, where


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(NOT_REPRODUCIBLE)} for r in rows]


def rows_once(out: Path, steps: int) -> bool:
    """metrics.jsonl holds every step exactly once, in order (a lost or repeated row fails)."""
    return [r["step"] for r in metrics(out)] == list(range(1, steps + 1))


def same_run(ref: Path, out: Path) -> bool:
    if metrics(ref) != metrics(out):
        return False
    a, b = load_file(str(ref / "final/model.safetensors")), load_file(str(out / "final/model.safetensors"))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="recipe overrides, e.g. deepspeed.zero_stage=3 trainer.max_tokens_per_micro_batch=400")
    ap.add_argument("--work", type=Path, default=Path("/tmp/chord-kill-resume"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    ref = args.work / f"ref{args.ranks}"
    if not (ref / "final").is_dir():
        code, _ = launch(args, ref, None, rng)
        assert code == 0, f"reference run failed, see {ref}.log"
    rows = []
    for trial in range(args.trials):
        out = args.work / f"trial{args.ranks}_{trial}"
        kills = []
        for _ in range(rng.randint(1, 2)):
            if logged_steps(out) + 1 > args.steps - 1:
                break
            code, where = launch(args, out, rng.randint(logged_steps(out) + 1, args.steps - 1), rng)
            kills.append(where)
            if code == 0:  # the run ended before the kill point
                break
        code, _ = launch(args, out, None, rng)
        once = code == 0 and rows_once(out, args.steps)
        exact = once and same_run(ref, out)
        rows.append((trial, "; ".join(kills), code, once, exact))
        print(f"trial {trial}: {'; '.join(kills)} -> exit {code}, rows once: {once}, bit-exact: {exact}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    day = datetime.date.today().isoformat()
    tag = "" if not args.set else "_" + "_".join(x.split("=")[0].split(".")[-1] + "-" + x.split("=")[1]
                                                 for x in args.set)
    tag += f"_seed{args.seed}" if args.seed else ""
    res = ROOT / "benchmarks/results" / f"kill_resume_{args.ranks}rank{tag}_{day}.md"
    lines = [f"# SIGKILL at random moments, then resume ({args.ranks} rank(s), {args.steps} steps, checkpoint "
             f"every step)", "", f"commit {commit}, {day}, CPU fp32, `python benchmarks/kill_resume.py "
             f"--trials {args.trials} --steps {args.steps} --ranks {args.ranks} --seed {args.seed}"
             f"{' --set ' + ' '.join(args.set) if args.set else ''}`", "",
             "| trial | kills | final exit | each step's row once | bit-exact vs uninterrupted |",
             "|---|---|---|---|---|"]
    lines += [f"| {t} | {k} | {c} | {'yes' if o else 'NO'} | {'yes' if e else 'NO'} |" for t, k, c, o, e in rows]
    lines += ["", f"{sum(e for *_, e in rows)} of {len(rows)} trials bit-exact."]
    res.write_text("\n".join(lines) + "\n")
    print(res.read_text())
    return 0 if all(e for *_, e in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
