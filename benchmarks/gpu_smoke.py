"""The GPU smoke checks behind benchmarks/gpu_smoke.sh (one CUDA GPU); writes the result file.

    python benchmarks/gpu_smoke.py --work DIR [--kernels-log F --kernels-status N]
Exit status 1 if any check fails; the result file says which.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN = ["recipes/tiny.yaml", "trainer.steps=4", "trainer.save_every=0", "logging.progress_bar=false",
         "deepspeed.zero_stage=3", "loss.impl=triton", "trainer.max_tokens_per_micro_batch=512",
         "rollout.gpu_memory_utilization=0.3"]
BF16 = ["model.dtype=bfloat16", "deepspeed.bf16=true"]


def repeated_batch(steps: int = 6) -> dict:
    """The same rows for `steps` learner steps (ZeRO-3, bf16, triton, packed): the loss must fall."""

    from chord.batching import collate, count_tokens, plan_micro_batches
    from chord.build import build_learner
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed
    from chord.models.tiny import build_tiny_model

    fixed_rows = runpy.run_path(str(ROOT / "tests/integration/learner_step.py"))["fixed_rows"]  # not installed
    init_distributed()
    model = str(build_tiny_model(ROOT / ".cache/chord"))
    cfg = load_config(None, [f"model.path={model}", "deepspeed.zero_stage=3", *BF16, "loss.impl=triton",
                             "trainer.max_tokens_per_micro_batch=44", "data.expert.max_length=32",
                             # plain SFT weights: the phi-weighted loss p(1-p)(-log p) rises while p < 1/e
                             "algorithm.sft_weight=none",
                             "data.prompts.max_prompt_length=8", "rollout.max_new_tokens=20", "trainer.lr=1e-3"])
    rows = fixed_rows(vocab=256)
    plan = plan_micro_batches(rows, 1, max_tokens=44, rows_per_micro=1, packed=True)[0]
    micro = [collate(b, 0, True) for b in plan]
    learner = build_learner(cfg, model)
    n_r, n_e = count_tokens(rows)
    losses, logps, t0 = [], [], time.perf_counter()
    for _ in range(steps):
        # mu = 1: pure SFT on the fixed rows, whose expert log-likelihood must rise at every step
        m = learner.train_step(micro, 1.0, n_r, n_e)
        losses.append(float(m["loss/total"]))
        logps.append(float(m["sft/expert_logp"]))
    rising = all(b > a for a, b in zip(logps, logps[1:])) and logps[-1] - logps[0] > 0.5
    return {"losses": losses, "expert_logp": logps, "micro_batches": len(micro), "seconds": time.perf_counter() - t0,
            "device": str(learner.device), "ok": rising and len(micro) >= 2}


def train_run(work: Path, name: str, extra: list[str]) -> dict:
    out = work / name
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "chord/train.py", *TRAIN, f"run.output_dir={out}", *extra],
                       cwd=ROOT, capture_output=True, text=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] if (out / "metrics.jsonl").exists() else []
    gaps = [r.get("gap/logp_max", float("nan")) for r in rows]
    return {"name": name, "exit": p.returncode, "seconds": time.perf_counter() - t0, "steps": len(rows),
            "gap_max": gaps, "gap_mean": [r.get("gap/logp_mean", float("nan")) for r in rows],
            "micro_batches": [r.get("batch/micro_batches") for r in rows],
            "loss": [r.get("loss/total") for r in rows], "stderr_tail": p.stderr[-1500:]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--kernels-log", default=None)
    ap.add_argument("--kernels-status", type=int, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.child:  # its own process: the learner must not share a process with the training runs' engines
        print("RESULT " + json.dumps(repeated_batch()), flush=True)
        return 0
    import importlib.util

    import torch

    from chord.models.tiny import build_tiny_model

    missing = [m for m in ("deepspeed", "vllm") if importlib.util.find_spec(m) is None]
    rb: dict = {"ok": None, "error": "not run: DeepSpeed is not installed"}
    if "deepspeed" not in missing:
        try:
            p = subprocess.run([sys.executable, __file__, "--work", str(work), "--child"], cwd=ROOT,
                               capture_output=True, text=True, timeout=float(os.environ.get("CHORD_SMOKE_TIMEOUT", 1800)))
            line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
            rb = json.loads(line[7:]) if line else {"ok": False, "error": p.stderr[-2000:]}
        except subprocess.TimeoutExpired as e:
            rb = {"ok": False, "error": f"timed out after {e.timeout:.0f} s: {(e.stderr or b'')[-1500:]!r}"}
    buckets = None
    if "deepspeed" not in missing:  # the push's buckets equal the full weights and land in an engine (no vLLM needed)
        model = str(build_tiny_model(ROOT / ".cache/chord"))
        p = subprocess.run([sys.executable, "tests/integration/bucket_equivalence.py", model, "bfloat16"], cwd=ROOT,
                           capture_output=True, text=True, timeout=float(os.environ.get("CHORD_SMOKE_TIMEOUT", 1800)))
        buckets = next((x[7:] for x in p.stdout.splitlines() if x.startswith("RESULT ")), p.stderr[-1500:])
    # gap guard: fp32; sleep mode releases the engine's weights and KV cache after every generation
    runs = None if missing else (train_run(work, "fp32", []), train_run(work, "bf16", BF16),
                                 train_run(work, "fp32-sleep", ["rollout.sleep_mode=true"]))
    fp32, bf16, slp = runs or ({}, {}, {})
    checks = {
        "kernel tests on CUDA": a.kernels_status == 0,
        "bucketed weight push: every tensor once, bit-equal, lands in an engine (ZeRO-3, bf16)":
            None if buckets is None else buckets.startswith("ok"),
        "repeated batch: expert log-prob rises every step, +0.5 nats (ZeRO-3, bf16, triton, packed, 2+ micro-batches)": rb.get("ok"),
        "fp32 CHORD run: exit 0, 4 steps, log-prob gap <= 1e-3 every step": None if runs is None else
            fp32["exit"] == 0 and fp32["steps"] == 4 and max(fp32["gap_max"], default=1) <= 1e-3,
        "bf16 CHORD run: exit 0, 4 steps, mean log-prob gap <= 0.05 every step": None if runs is None else
            bf16["exit"] == 0 and bf16["steps"] == 4 and max(bf16["gap_mean"], default=1) <= 0.05,
        "fp32 CHORD run with vLLM sleep mode: exit 0, 4 steps, log-prob gap <= 1e-3 every step": None if runs is None
            else slp["exit"] == 0 and slp["steps"] == 4 and max(slp["gap_max"], default=1) <= 1e-3,
    }
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    out = ROOT / "benchmarks" / "results" / f"gpu_smoke_{gpu}_{dt.date.today().isoformat()}.md"
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    ktail = Path(a.kernels_log).read_text().strip().splitlines()[-1] if a.kernels_log else "not run"
    lines = [f"# GPU smoke test: {torch.cuda.get_device_name()}", "",
             f"Commit {sha}; {dt.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
             f"command `bash benchmarks/gpu_smoke.sh`", "", "| check | result |", "|---|---|"]
    word = {True: "pass", False: "**FAIL**", None: f"not run ({', '.join(missing)} not installed)"}
    lines += [f"| {k} | {word[v]} |" for k, v in checks.items()]
    lines += ["", f"Kernel tests: `{ktail}`", "", f"Bucketed push: `{buckets}`", "",
              f"Repeated batch: {json.dumps({k: v for k, v in rb.items() if k != 'error'})}", ""]
    for r in runs or ():
        lines += [f"CHORD run {r['name']}: exit {r['exit']}, {r['steps']} steps in {r['seconds']:.1f} s, "
                  f"micro-batches {r['micro_batches']}, loss {r['loss']}, gap max {r['gap_max']}, gap mean {r['gap_mean']}"]
        if r["exit"]:
            lines += ["```", r["stderr_tail"], "```"]
    if rb.get("error"):
        lines += ["```", rb["error"], "```"]
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    return 1 if False in checks.values() else 2 if None in checks.values() else 0


if __name__ == "__main__":
    sys.exit(main())
