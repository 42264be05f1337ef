"""Where the time before a run's first step goes, cold and warm (docs/usage.md#start-up-time).

    python benchmarks/startup.py [--recipe recipes/quickstart.yaml] [--repeats 2] [--out FILE.json]

Each repeat launches `chord/train.py RECIPE trainer.steps=1` twice: **cold** (fresh TORCH_EXTENSIONS_DIR,
VLLM_CACHE_ROOT and model.cache_dir: DeepSpeed compiles its shm op, vLLM and the task caches start empty) and
then **warm** (the same folders again). Every `chord:` line the run prints is timestamped from launch; the
phases are the gaps between the lines that open and close them. Prints a table of medians and writes every
timestamp to --out (JSON). Run it on a quiet machine: two cores drown easily.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("imports, config, data, model files", "learner (DeepSpeed, incl. its shm op)", "rollout engine (vLLM)",
          "evaluation at step 0", "launch to first step")


def timed_lines(cmd: list[str], env: dict[str, str]) -> tuple[list[tuple[float, str]], float, int]:
    """(seconds since launch, line) for every `chord:` line on stderr; total seconds; exit status."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    lines = [(time.monotonic() - t0, line.rstrip()[len("chord: "):]) for line in p.stderr
             if line.startswith("chord: ")]
    code = p.wait()
    return lines, time.monotonic() - t0, code


def phases(lines: list[tuple[float, str]]) -> dict[str, float]:
    """The gaps between the lines that open and close each phase (chord/build.py and chord/train.py say them)."""
    learner = next(i for i, (_, x) in enumerate(lines) if x.startswith("learner:"))
    start = next(s for s, x in lines if x.startswith("rollout engine: starting"))
    ready = next(s for s, x in lines if x.startswith("rollout engine ready"))
    first = next(s for s, x in lines if x.startswith("step 1 of"))
    data = lines[learner - 1][0]  # the last line before the learner's build: data and benchmarks read
    return dict(zip(PHASES, (round(v, 2) for v in (data, lines[learner][0] - data, ready - start, first - ready,
                                                     first)), strict=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/quickstart.yaml")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    runs = []
    for r in range(a.repeats):
        with tempfile.TemporaryDirectory(prefix="chord-startup-") as tmp:
            env = {**os.environ, "TORCH_EXTENSIONS_DIR": f"{tmp}/torch-ext", "VLLM_CACHE_ROOT": f"{tmp}/vllm"}
            for kind in ("cold", "warm"):
                cmd = [sys.executable, "chord/train.py", a.recipe, "trainer.steps=1", "trainer.save_at_end=false",
                       "eval.at_end=false", "logging.progress_bar=false", f"model.cache_dir={tmp}/cache",
                       f"run.output_dir={tmp}/run-{kind}"]
                lines, total, code = timed_lines(cmd, env)
                if code:
                    print(f"startup: {kind} run {r} failed (exit {code}); its lines: {lines}", file=sys.stderr)
                    return 1
                runs.append({"kind": kind, "repeat": r, "total_s": round(total, 2), "phases": phases(lines),
                             "lines": [(round(t, 2), x) for t, x in lines]})
                print(f"{kind} {r}: {runs[-1]['phases']}", file=sys.stderr)
    print(f"| phase ({a.recipe}, median of {a.repeats}) | cold (s) | warm (s) |\n|---|---|---|")
    for name in PHASES:
        med = {k: statistics.median(x["phases"][name] for x in runs if x["kind"] == k) for k in ("cold", "warm")}
        print(f"| {name} | {med['cold']:.1f} | {med['warm']:.1f} |")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"recipe": a.recipe, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                                     "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
