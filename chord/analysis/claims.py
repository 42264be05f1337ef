"""Numbers that test the CHORD paper's claims (arXiv 2508.11408) on a finished run, one small function each.

    from chord.analysis.claims import area_under_curve, style_stats, val_selected
    run = load_run("runs/cards-chord-phi-seed0")
    val_selected(run, "val/avg@4", ["id/avg@4", "ood/avg@4"])  # {"step": 40, "id/avg@4": ..., "ood/avg@4": ...}
    style_stats(Path("runs/cards-chord-phi-seed0"))[("id", 40)]["expert_share"]

Pure python over chord.analysis.runs (metrics.jsonl, eval.jsonl) and eval/samples_step_N.jsonl (written with
eval.save_samples), for benchmarks/method_comparison.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from chord.analysis.runs import Run, jsonl_objects, series


def mean_or_none(xs: Sequence[float]) -> float | None:
    """The mean of xs; None when there are none."""
    return sum(xs) / len(xs) if xs else None


def val_selected(run: Run, select_key: str, report_keys: list[str], min_step: int = 1) -> dict | None:
    """The evaluation at step >= min_step with the highest select_key (ties: the earliest), as
    {"step": s, <report key>: value at s (None if not logged there)}; None without such an evaluation.

    The paper reports "the best checkpoint determined by the validation set" (arXiv 2508.11408 App. A.2): the
    step is chosen on validation, never on the reported benchmarks, and never the untrained step 0 (min_step=1).
    """
    best: dict | None = None
    for r in sorted(run.evals, key=lambda r: r["step"]):  # stable: equal steps keep their order
        if r["step"] >= min_step and select_key in r and (best is None or r[select_key] > best[select_key]):
            best = r
    if best is None:
        return None
    return {"step": int(best["step"]), **{k: best.get(k) for k in report_keys}}


def area_under_curve(run: Run, key: str, min_step: int = 1) -> float | None:
    """The trapezoidal mean of key's evaluation curve over steps >= min_step: integral / (last step - first step).

    One number for a whole curve, so a method that dips and recovers (the shift-readapt pattern the paper reports
    for SFT on expert data, arXiv 2508.11408; docs/algorithm.md#why-chord) pays for the dip, which best and final
    values hide. One point: its value; none: None. Points all at one step (a stage boundary's two evaluations):
    their mean.
    """
    steps, vals = series(run.evals, key)
    # stable sort by step: at a stage boundary the earlier stage's last point closes the left segment, the next
    # stage's step-0 point opens the right one
    pts = sorted(((s, v) for s, v in zip(steps, vals, strict=True) if s >= min_step), key=lambda p: p[0])
    if not pts:
        return None
    width = pts[-1][0] - pts[0][0]
    if width == 0:
        return mean_or_none([v for _, v in pts])
    integral = sum((s1 - s0) * (v0 + v1) / 2 for (s0, v0), (s1, v1) in zip(pts, pts[1:]))
    return integral / width


def entropy_end(run: Run, key: str = "entropy/rollout", last: int = 5) -> float | None:
    """The mean of key's last `last` logged values (steps without rollout tokens left out, as `series` does).

    The paper's token-wise weight phi is meant to keep the policy's entropy from collapsing or spiking (arXiv
    2508.11408, the entropy figures of sections 3-4): compare this across methods.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    return mean_or_none(series(run.rows, key)[1][-last:])


def diversity_gap(run: Run, bench: str, k: int) -> list[tuple[int, float]]:
    """(step, pass@k - avg@k) per evaluation that logged both: how much solving-by-sampling exceeds the mean.

    A gap that shrinks to 0 means the k samples agree (right or wrong): exploration lost, which CHORD claims to
    preserve while learning from the expert (arXiv 2508.11408 abstract).
    """
    p, a = f"{bench}/pass@{k}", f"{bench}/avg@{k}"
    return [(int(r["step"]), r[p] - r[a]) for r in run.evals if p in r and a in r]


def style_stats(run_folder: Path, expert_prefix: str = "Values:") -> dict[tuple[str, int], dict]:
    """Per (benchmark, step) of run_folder/eval/samples_step_N.jsonl: {"n", "n_expert", "expert_share",
    "acc_expert", "acc_other"}; a response is expert-style when its stripped text starts with expert_prefix, and
    an accuracy is None over no responses.

    Tells adopting the expert's response pattern apart from improving in the model's own style: the paper argues
    SFT on off-policy expert data disrupts the model's established patterns (arXiv 2508.11408 abstract and
    introduction; docs/algorithm.md#why-chord). Steps
    are as written in the folder given (a staged run's stage folders are not offset here).
    """
    out: dict[tuple[str, int], dict] = {}
    for path in sorted(Path(run_folder, "eval").glob("samples_step_*.jsonl")):
        if not (m := re.fullmatch(r"samples_step_(\d+)\.jsonl", path.name)):
            continue
        groups: dict[str, tuple[list[bool], list[bool]]] = {}  # benchmark -> (expert correct, other correct)
        for s in jsonl_objects(path)[0]:
            if {"benchmark", "response", "correct"} <= s.keys() and isinstance(s["response"], str):
                expert, other = groups.setdefault(s["benchmark"], ([], []))
                (expert if s["response"].strip().startswith(expert_prefix) else other).append(bool(s["correct"]))
        for bench, (expert, other) in groups.items():
            n = len(expert) + len(other)
            out[(bench, int(m[1]))] = {"n": n, "n_expert": len(expert), "expert_share": len(expert) / n,
                                       "acc_expert": mean_or_none(expert), "acc_other": mean_or_none(other)}
    return out
