"""rank0 vs per_rank rollout placement, side by side, at 2 ranks on this machine (tiny model, real
vLLM + DeepSpeed ZeRO-3): median step, generate, exchange and weight-push times over the steps after
the first, as ratios per_rank / rank0 measured in the same invocation.

    python benchmarks/bench_placement.py [--steps 6] [--work /tmp/chord-placement]
        writes benchmarks/results/placement_2rank_<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("time/step", "time/generate_max_rank", "time/generate_mean_rank", "time/exchange", "time/weight_sync",
        "time/learner", "throughput/rollout_tokens_per_s")


def run(placement: str, steps: int, work: Path) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = work / placement
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "chord/train.py", "recipes/tiny.yaml", f"trainer.steps={steps}", f"run.output_dir={out}",
           "logging.progress_bar=false", "trainer.save_at_end=false", "trainer.save_every=0",
           "deepspeed.zero_stage=3", f"rollout.placement={placement}", "eval.benchmarks=[]"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{placement}: exit {p.returncode}\n{p.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1:]  # first step: warm-up
    return {k: statistics.median(r[k] for r in rows) for k in KEYS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--work", default="/tmp/chord-placement")
    a = ap.parse_args()
    res = {p: run(p, a.steps, Path(a.work)) for p in ("rank0", "per_rank")}
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    date = dt.date.today().isoformat()
    md = [f"# Rollout placement at 2 ranks: rank0 vs per_rank ({date}, commit {sha})", "",
          f"CPU, 2 cores, tiny model, recipes/tiny.yaml (16 prompts x 8 samples, 16 expert rows), ZeRO-3, fp32; "
          f"median over steps 2..{a.steps}. Command: `python benchmarks/bench_placement.py --steps {a.steps}`.", "",
          "| metric | rank0 | per_rank | per_rank / rank0 |", "|---|---|---|---|"]
    for k in KEYS:
        r0, pr = res["rank0"][k], res["per_rank"][k]
        md.append(f"| {k} | {r0:.3f} | {pr:.3f} | {pr / r0:.2f}x |" if r0 else f"| {k} | {r0:.3f} | {pr:.3f} | - |")
    path = ROOT / "benchmarks" / "results" / f"placement_2rank_{date}.md"
    path.write_text("\n".join(md) + "\n")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
