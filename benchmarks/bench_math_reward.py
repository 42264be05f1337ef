"""Math reward throughput and worst-case latency on this machine (CPU only; no GPU involved).

    python benchmarks/bench_math_reward.py [--n 2000] [--out benchmarks/results]

Measures, in one run:
  * samples/s scoring realistic R1-style responses (tests/math_cases.py) with 1 verifier process
    (the baseline) and with the default pool (min(4, cores)); the ratio is pool / baseline;
  * each adversarial case of the tests (tests/math_cases.py ADVERSARIAL) alone: wall time and score,
    against the 2 s per-sample budget;
  * a batch mixing every adversarial case into realistic responses: how long one batch takes when
    some samples time out (they hold only their own worker).
Writes a markdown file with machine, date and commit to --out.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import runpy
import subprocess
import time
from pathlib import Path

from chord.rewards.math_verifier import MathReward

ROOT = Path(__file__).resolve().parents[1]
_CASES = runpy.run_path(str(ROOT / "tests/math_cases.py"))  # the tests' cases (tests/ is not installed)
ADVERSARIAL, realistic_responses = _CASES["ADVERSARIAL"], _CASES["realistic_responses"]


def throughput(workers: int | None, batch: list[tuple[str, str]], chunk: int = 256) -> tuple[float, float]:
    """(samples/s, accuracy) over the batch, scored in training-step-sized chunks; pool start excluded."""
    with MathReward(workers=workers) as reward:
        reward.warm_up()
        t0 = time.perf_counter()
        scores = []
        for i in range(0, len(batch), chunk):
            part = batch[i:i + chunk]
            scores += reward.score_batch([r for r, _ in part], [g for _, g in part])
        dt = time.perf_counter() - t0
    return len(batch) / dt, sum(info["correct"] for _, info in scores) / len(scores)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args()
    batch = realistic_responses(a.n)
    base_sps, acc = throughput(1, batch)
    pool_workers = min(4, os.cpu_count() or 1)
    pool_sps, acc_pool = throughput(None, batch)
    assert acc == acc_pool, "the pool must score exactly like one worker"

    rows = []
    with MathReward() as reward:
        reward.warm_up()
        for text, gold in ADVERSARIAL:
            t0 = time.perf_counter()
            score, info = reward(text, gold)
            rows.append((text, time.perf_counter() - t0, score, info))
        mixed = realistic_responses(245, seed=1) + ADVERSARIAL
        t0 = time.perf_counter()
        mixed_scores = reward.score_batch([r for r, _ in mixed], [g for _, g in mixed])
        mixed_dt = time.perf_counter() - t0
    timeouts = sum(info["timeout"] for _, info in mixed_scores)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    today = datetime.date.today().isoformat()
    lines = [
        f"# Math reward on CPU ({today})", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; commit {commit}; "
        f"`python benchmarks/bench_math_reward.py --n {a.n}`", "",
        "| scoring | samples/s | ratio |", "|---|---:|---:|",
        f"| 1 verifier process (baseline) | {base_sps:.0f} | 1.00 |",
        f"| pool of {pool_workers} (default) | {pool_sps:.0f} | {pool_sps / base_sps:.2f} |", "",
        f"Realistic responses: {a.n} R1-style texts of ~2 KB, {acc:.0%} correct, scored in chunks of 256.", "",
        "| adversarial case (first 40 chars) | seconds | score | timeout |", "|---|---:|---:|---:|",
    ]
    for text, dt, score, info in rows:
        shown = text[:40].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{shown}` ({len(text):,} chars) | {dt:.2f} | {score:g} | {int(info['timeout'])} |")
    worst = max(dt for _, dt, _, _ in rows)
    lines += ["", f"Worst adversarial case: {worst:.2f} s (budget 2.0 s per sample).",
              f"Mixed batch (245 realistic + {len(ADVERSARIAL)} adversarial): {mixed_dt:.2f} s, "
              f"{int(timeouts)} timeouts."]
    text = "\n".join(lines) + "\n"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"math_reward_cpu_{today}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
