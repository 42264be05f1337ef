"""Run folders as chord writes them, read once for every analysis: metrics.jsonl and eval.jsonl.

    from chord.analysis.runs import eval_stats, load_run, series
    run = load_run("runs/math-sft-then-rl")  # a run.output_dir, or a staged run folder
    eval_stats(run, "aime24/avg@32")  # {"start": ..., "best": ..., "best_step": ..., "final": ...}
    series(run.rows, "reward/mean")  # (global steps, values)

metrics.jsonl holds one row per optimizer step (chord.logger), eval.jsonl one row per evaluation, its names
without "eval/" (chord.evaluation). A staged run folder (stage1-<name>/, stage2-<name>/, ...) is one timeline:
stage i's steps are offset by the steps (max step in metrics.jsonl) of the stages before it, so a later
stage's step-0 evaluation sits at its stage start. Malformed lines (a killed run's last line) are skipped
and counted. Used by benchmarks/compare.py, benchmarks/method_comparison.py and chord.analysis.run_phases.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

Row = dict[str, float]
AVG_KEY = re.compile(r"^(?!overall/)(.+)/avg@(\d+)$")  # "<benchmark>/avg@<k>"
NEEDS_TOKENS = {"entropy/rollout": "tokens/rollout", "entropy/expert": "tokens/expert"}
LOWER_IS_BETTER = ("length_mean", "truncated_frac")


class RunFolderError(ValueError):
    """A folder that is not a run: neither metrics.jsonl nor stage folders."""


@dataclass
class Stage:
    name: str
    start: int  # global step offset of the stage
    end: int  # global step of its last step


@dataclass
class Run:
    label: str
    path: Path
    rows: list[Row] = field(default_factory=list)  # metrics.jsonl rows, "step" global
    evals: list[Row] = field(default_factory=list)  # evaluation rows (names without "eval/"), "step" global
    stages: list[Stage] = field(default_factory=list)  # empty for an unstaged run
    skipped: int = 0  # malformed lines

    @property
    def steps(self) -> int:
        return self.stages[-1].end if self.stages else max((int(r["step"]) for r in self.rows), default=0)

    @property
    def boundaries(self) -> list[tuple[int, str]]:
        return [(s.start, s.name) for s in self.stages[1:]]


def jsonl_objects(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a JSONL file (none if it is missing), and how many non-blank lines were not one."""
    out, bad = [], 0
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            out.append(obj)
        else:
            bad += 1
    return out, bad


def read_jsonl(path: Path) -> tuple[list[Row], int]:
    """Rows with an integer step and their finite numeric values (last row wins per step); the skip count."""
    objs, bad = jsonl_objects(path)
    by_step: dict[int, Row] = {}
    for obj in objs:
        step = obj.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            bad += 1
            continue
        by_step[step] = {k: float(v) for k, v in obj.items() if isinstance(v, (int, float))
                         and not isinstance(v, bool) and math.isfinite(v)} | {"step": step}
    return [by_step[s] for s in sorted(by_step)], bad


def read_folder(folder: Path) -> tuple[list[Row], list[Row], int]:
    """One run (or stage) folder's metrics.jsonl rows, eval.jsonl rows and skipped lines; steps as written."""
    rows, bad = read_jsonl(folder / "metrics.jsonl")
    evals, bad_e = read_jsonl(folder / "eval.jsonl")
    return rows, evals, bad + bad_e


def load_run(path: str | Path, label: str | None = None) -> Run:
    """A run folder, or a staged one as one timeline; RunFolderError if it has neither metrics nor stages."""
    path = Path(path)
    run = Run(label or path.resolve().name, path)
    found = [(int(m.group(1)), m.group(2), d) for d in (path.iterdir() if path.is_dir() else [])
             if d.is_dir() and (m := re.fullmatch(r"stage(\d+)-(.+)", d.name))]
    if not found and not (path / "metrics.jsonl").is_file():
        raise RunFolderError(f"{path}: no metrics.jsonl and no stage folders")
    offset = 0
    for _, name, folder in sorted(found) if found else [(0, "", path)]:
        rows, evals, bad = read_folder(folder)
        for r in rows + evals:
            r["step"] = int(r["step"]) + offset
        end = max((int(r["step"]) for r in rows), default=offset)
        run.rows += rows
        run.evals += evals
        run.skipped += bad
        if found:
            run.stages.append(Stage(name, offset, end))
        offset = end
    return run


def series(rows: list[Row], key: str) -> tuple[list[int], list[float]]:
    """(global steps, values) of `key`, leaving out entropies of steps that had no such tokens."""
    need = NEEDS_TOKENS.get(key)
    pts = [(int(r["step"]), r[key]) for r in rows if key in r and not (need and r.get(need, 1.0) == 0)]
    return [p[0] for p in pts], [p[1] for p in pts]


def eval_stats(run: Run, key: str) -> dict:
    """First, best (highest, lowest for length_mean / truncated_frac; ties: the earliest) and last values."""
    steps, vals = series(run.evals, key)
    if not vals:
        return {"start": None, "best": None, "best_step": None, "final": None}
    sign = -1 if key.endswith(LOWER_IS_BETTER) else 1
    i = max(range(len(vals)), key=lambda j: (sign * vals[j], -j))
    return {"start": vals[0], "best": vals[i], "best_step": steps[i], "final": vals[-1]}
