"""Phases (chord.analysis.phases) of a run folder's curves, its logs read by chord.analysis.runs.

    from chord.analysis.run_phases import read_run_phases
    read_run_phases("runs/math-sft")  # {"aime24": Phases(shift=20, readapt=60, overfit=140, evidence=...), ...}

Names: "<benchmark>/avg@<k>" and "<benchmark>/problems" per evaluation (chord.evaluation), the expert loss as
-"sft/expert_logp" (else "loss/sft") with "tokens/expert" and "mu" per step (chord.train), and with
eval.save_samples the per-sample results in eval/samples_step_N.jsonl.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from chord.analysis.phases import Curve, Phases, Series, binomial_stderr, detect_phases, problem_stderr
from chord.analysis.runs import AVG_KEY, jsonl_objects, read_folder

Row = Mapping[str, float]


def _stderr(
    sample_se: Mapping[tuple[str, int], float] | None, name: str, step: int, acc: float, samples: float
) -> float:
    return (sample_se or {}).get((name, step)) or binomial_stderr(acc, int(samples))


def curves_from_rows(
    evals: Sequence[Row], sample_se: Mapping[tuple[str, int], float] | None = None
) -> dict[str, Curve]:
    """Per benchmark (and "overall" with >= 2): avg@k per evaluation with its SE.

    SE: problem_stderr from the saved samples when given as sample_se[(benchmark, step)], else binomial_stderr
    over `<benchmark>/problems` x k samples (points without a problem count are left out). A later row of the
    same step wins, as in chord.analysis.runs (a staged run re-evaluates the same weights at the next stage's
    step 0).
    """
    by_step = {int(r["step"]): r for r in evals}
    names = sorted({(m[1], int(m[2])) for r in evals for key in r if (m := AVG_KEY.match(key))})
    curves: dict[str, Curve] = {}
    for name, k in names:
        acc, n = f"{name}/avg@{k}", f"{name}/problems"
        pts = [
            (s, r[acc], _stderr(sample_se, name, s, r[acc], r[n] * k))
            for s, r in sorted(by_step.items())
            if acc in r and r.get(n, 0) >= 1
        ]
        if pts:
            curves[name] = Curve(*map(list, zip(*pts)))
    common = sorted(set.intersection(*(set(c.steps) for c in curves.values()))) if len(curves) > 1 else []
    if common:  # overall/avg is the unweighted mean of the benchmarks, so its SE is sqrt(sum se^2) / B
        at = [{s: (a, e) for s, a, e in zip(c.steps, c.accuracy, c.stderr)} for c in curves.values()]
        curves["overall"] = Curve(
            common,
            [sum(d[s][0] for d in at) / len(at) for s in common],
            [math.sqrt(sum(d[s][1] ** 2 for d in at)) / len(at) for s in common],
        )
    return curves


def expert_loss_from_rows(rows: Sequence[Row]) -> Series | None:
    """Loss on expert tokens per SFT step (mu > 0 and expert tokens), None when the run never did SFT.

    -sft/expert_logp, the plain NLL of the expert tokens, when logged: loss/sft carries CHORD-phi's p(1-p)
    weights, which shrink as p -> 1 and would make the loss "fall" without the fit improving.
    """
    key = "sft/expert_logp" if any("sft/expert_logp" in r for r in rows) else "loss/sft"
    sign = -1.0 if key == "sft/expert_logp" else 1.0
    pts = [
        (int(r["step"]), sign * r[key])
        for r in rows
        if key in r and r.get("tokens/expert", 1) > 0 and r.get("mu", 1) > 0
    ]
    return Series(*map(list, zip(*pts))) if pts else None


def phases_from_rows(
    evals: Sequence[Row],
    rows: Sequence[Row],
    *,
    z: float = 2.0,
    persist: int = 2,
    sample_se: Mapping[tuple[str, int], float] | None = None,
) -> dict[str, Phases]:
    """Phases per benchmark of one run's evaluation and training rows; {} for a run without SFT steps."""
    loss = expert_loss_from_rows(rows)
    if loss is None:  # the phases describe SFT: a pure GRPO run's dip is not a "shift"
        return {}
    return {
        name: detect_phases(c, loss, sft_start=loss.steps[0], z=z, persist=persist)
        for name, c in curves_from_rows(evals, sample_se).items()
    }


def sample_stderrs(folder: Path) -> dict[tuple[str, int], float]:
    """problem_stderr per (benchmark, step) from eval/samples_step_N.jsonl (written with eval.save_samples)."""
    out = {}
    for path in folder.glob("samples_step_*.jsonl"):
        if not (m := re.fullmatch(r"samples_step_(\d+)\.jsonl", path.name)):
            continue
        by_problem: dict[str, dict[object, list[bool]]] = {}
        for s in jsonl_objects(path)[0]:
            if {"benchmark", "problem", "correct"} <= s.keys():
                by_problem.setdefault(s["benchmark"], {}).setdefault(s["problem"], []).append(
                    bool(s["correct"])
                )
        step = int(m[1])
        for bench, problems in by_problem.items():
            if all(len(v) >= 2 for v in problems.values()):
                out[(bench, step)] = problem_stderr(list(problems.values()))
    return out


def read_run_phases(folder: str | Path, *, z: float = 2.0, persist: int = 2) -> dict[str, Phases]:
    """Phases per benchmark of one run folder (metrics.jsonl, eval.jsonl, eval/samples_step_N.jsonl if saved).

    A staged run (stage1-sft/, stage2-rl/) is one timeline only once its steps are offset: pass the rows of
    chord.analysis.runs.load_run to phases_from_rows (as benchmarks/compare.py does).
    """
    folder = Path(folder)
    rows, evals, _ = read_folder(folder)
    return phases_from_rows(evals, rows, z=z, persist=persist, sample_se=sample_stderrs(folder / "eval"))
