"""Learner time and peak memory: packed token-budget micro-batches vs fixed-row right-padded ones.

    python benchmarks/bench_packing.py                    # CPU: the defaults below, ~5 minutes on 2 cores
    python benchmarks/bench_packing.py --gpu --hidden 3584 --layers 4 --vocab 152064 --rows 320 \
        --max-response 10240 --budget 16384 --rows-per-micro 10     # a GPU: 7B-wide layers, paper lengths

One learner step (forward, CHORD loss, backward, optimizer step; the real DeepSpeedLearner at ZeRO-0,
fp32 on CPU) on the same rows, laid out two ways:
* padded: `--rows-per-micro` rows per micro-batch in arrival order, right-padded to the longest
  (what chord did before token budgets; the paper recipe's 10 rows per rank);
* packed: rows packed first-fit-decreasing into micro-batches of at most `--budget` tokens,
  concatenated without padding (`trainer.max_tokens_per_micro_batch`).
Row lengths follow a long-tailed law like R1-style responses (log-normal, median ~ max/6, capped at
`--max-response`). Each measurement runs in a fresh subprocess, variants interleaved (padded, packed,
padded, packed, ...); time = median over steps after one warm-up step; peak memory = the step's peak
RSS (VmHWM, reset through /proc/self/clear_refs) above the RSS before it on CPU,
`torch.cuda.max_memory_allocated` above the allocated memory on GPU. Writes
benchmarks/results/packing_<device>_<date>.md with the ratios packed / padded beside the real / padded
token ratio. Target: packed <= 0.6x padded in both time and peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def row_lengths(n: int, max_response: int, seed: int) -> list[tuple[int, int]]:
    """(prompt, response) lengths: prompts 30-200 tokens; responses log-normal, median max/6, capped."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        resp = min(max_response, max(8, int(rng.lognormvariate(math.log(max_response / 6), 0.9))))
        out.append((rng.randint(30, 200), resp))
    return out


def make_rows(args: argparse.Namespace):
    import torch

    from chord.batching import Row

    g = torch.Generator().manual_seed(args.seed)
    rows = []
    for i, (p, r) in enumerate(row_lengths(args.rows, args.max_response, args.seed)):
        ids = torch.randint(3, args.vocab, (p + r,), generator=g).tolist()
        kind = [0] * (p - 1) + [2 if i % 5 == 4 else 1] * r  # one row in five is an expert row
        old = [0.0] * (p - 1) + (-torch.rand(r, generator=g) * 3).tolist()
        rows.append(Row(ids, kind, old, float(torch.randn(1, generator=g))))
    return rows


def build_model(args: argparse.Namespace, folder: Path) -> str:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                          num_attention_heads=args.hidden // 64, num_key_value_heads=max(1, args.hidden // 256),
                          head_dim=64, intermediate_size=args.hidden * 11 // 4, tie_word_embeddings=False,
                          max_position_embeddings=args.max_response + 512)
        Qwen2ForCausalLM(cfg).save_pretrained(str(folder))
    return str(folder)


def measure(args: argparse.Namespace, variant: str, model: str) -> dict:
    """One subprocess: build the learner, one warm-up step, then `--steps` timed steps."""
    import torch
    from bench_loss import _rss  # /proc/self/status reader, shared with the loss benchmark (a sibling script)

    from chord.batching import collate, count_tokens, micro_batches, plan_micro_batches
    from chord.build import build_learner
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed

    init_distributed()
    gpu = torch.cuda.is_available()
    packed = variant == "packed"
    over = [f"model.path={model}", "trainer.lr=1e-6", f"loss.impl={'auto' if gpu else 'chunked'}",
            f"model.dtype={'bfloat16' if gpu else 'float32'}", f"deepspeed.bf16={str(gpu).lower()}",
            f"model.gradient_checkpointing={str(args.checkpointing).lower()}"]
    cfg = load_config(None, over)
    rows = make_rows(args)
    if packed:
        plan = plan_micro_batches(rows, 1, max_tokens=args.budget, rows_per_micro=1, packed=True)[0]
        micro = [collate(b, 0, True) for b in plan]
    else:
        micro = micro_batches(rows, args.rows_per_micro, 0)
    learner = build_learner(cfg, model)
    n_r, n_e = count_tokens(rows)
    learner.train_step(micro, 0.1, n_r, n_e)  # warm-up: allocator pools, optimizer state
    times, peaks = [], []
    for _ in range(args.steps):
        if gpu:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            base = _rss("VmRSS")
        t0 = time.perf_counter()
        learner.train_step(micro, 0.1, n_r, n_e)
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        peaks.append((torch.cuda.max_memory_allocated() if gpu else _rss("VmHWM")) - base)
    real = sum(len(r.input_ids) for r in rows)
    return {"variant": variant, "seconds": statistics.median(times), "peak_bytes": max(peaks),
            "micro_batches": len(micro), "forward_tokens": sum(mb.input_ids.numel() for mb in micro),
            "max_forward_tokens": max(mb.input_ids.numel() for mb in micro), "real_tokens": real}


def commit() -> str:
    try:
        sha = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()[:12]
        dirty = subprocess.check_output(["git", "status", "--porcelain", "chord", "benchmarks/bench_packing.py"],
                                        cwd=ROOT, text=True).strip()
        return sha + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="run on CUDA (bf16); default CPU fp32")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--rows", type=int, default=48)
    p.add_argument("--max-response", type=int, default=1024)
    p.add_argument("--rows-per-micro", type=int, default=8)
    p.add_argument("--budget", type=int, default=4096, help="packed tokens per micro-batch")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="interleaved subprocess pairs")
    p.add_argument("--checkpointing", action="store_true", help="model.gradient_checkpointing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    model_dir = Path(tempfile.gettempdir()) / f"chord-bench-packing-{args.hidden}-{args.layers}-{args.vocab}"
    if args.child:
        print("RESULT " + json.dumps(measure(args, args.child, build_model(args, model_dir))), flush=True)
        return 0
    if args.gpu:
        os.environ.pop("DS_ACCELERATOR", None)
    else:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    build_model(args, model_dir)
    results: dict[str, list[dict]] = {"padded": [], "packed": []}
    for rep in range(args.repeats):
        for variant in ("padded", "packed"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", variant]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{variant} run failed (exit {out.returncode})")
            r = json.loads(line[7:])
            results[variant].append(r)
            print(f"repeat {rep} {variant:6s} {r['seconds']:.2f} s, peak {r['peak_bytes'] / 2**20:.0f} MiB, "
                  f"{r['micro_batches']} micro-batches, {r['forward_tokens']} forward tokens", flush=True)
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    med = {v: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_bytes")} for v, rs in results.items()}
    pad, pack = results["padded"][0], results["packed"][0]
    t_ratio = med["packed"]["seconds"] / med["padded"]["seconds"]
    m_ratio = med["packed"]["peak_bytes"] / med["padded"]["peak_bytes"]
    tok_ratio = pad["real_tokens"] / pad["forward_tokens"]
    import torch

    device = (torch.cuda.get_device_name() if args.gpu
              else f"cpu ({os.cpu_count()} cores, {platform.processor() or 'x86_64'})")
    tag = "gpu" if args.gpu else "cpu"
    out = ROOT / "benchmarks" / "results" / f"packing_{tag}_{dt.date.today().isoformat()}.md"
    per = "\n".join(f"| {v} | {i} | {r['seconds']:.3f} | {r['peak_bytes'] / 2**20:.1f} | {r['micro_batches']} | "
                    f"{r['forward_tokens']} | {r['max_forward_tokens']} |"
                    for v, rs in results.items() for i, r in enumerate(rs))
    verdict = "met" if t_ratio <= 0.6 and m_ratio <= 0.6 else "NOT met"
    out.write_text(f"""# Packed vs padded learner step ({tag})

Command: `python benchmarks/bench_packing.py {' '.join(sys.argv[1:])}`
Commit: {commit()}; date: {dt.datetime.now().isoformat(timespec='seconds')}; device: {device}; torch {torch.__version__}
Model: Qwen2, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, {'bf16' if args.gpu else 'fp32'},
gradient checkpointing {'on' if args.checkpointing else 'off'}; DeepSpeed ZeRO-0, one rank, \
loss.impl {'auto' if args.gpu else 'chunked'}.
Rows: {args.rows} (one in five expert), prompts 30-200 tokens, responses log-normal (median {args.max_response // 6},
cap {args.max_response}); {pad['real_tokens']} real tokens.
Padded: {args.rows_per_micro} rows per micro-batch, right-padded. Packed: budget {args.budget} tokens per micro-batch.
Each run is a fresh subprocess, interleaved padded/packed x {args.repeats}; seconds = median of {args.steps}
steps after a warm-up step; peak = the step's peak \
{'allocated CUDA memory' if args.gpu else 'RSS (VmHWM)'} above its start.

| | padded | packed | packed / padded |
|---|---|---|---|
| learner step (s, median) | {med['padded']['seconds']:.3f} | {med['packed']['seconds']:.3f} | **{t_ratio:.2f}x** |
| peak extra memory (MiB, median) | {med['padded']['peak_bytes'] / 2**20:.1f} | \
{med['packed']['peak_bytes'] / 2**20:.1f} | **{m_ratio:.2f}x** |
| tokens through the model | {pad['forward_tokens']} | {pack['forward_tokens']} | \
{pack['forward_tokens'] / pad['forward_tokens']:.2f}x |
| largest forward (tokens) | {pad['max_forward_tokens']} | {pack['max_forward_tokens']} | \
{pack['max_forward_tokens'] / pad['max_forward_tokens']:.2f}x |
| micro-batches | {pad['micro_batches']} | {pack['micro_batches']} | |

Real / padded token ratio: {tok_ratio:.2f}. Target (packed <= 0.6x padded in time and memory): **{verdict}**.

| variant | repeat | seconds | peak MiB | micro-batches | forward tokens | largest forward |
|---|---|---|---|---|---|---|
{per}
""")
    print(out.read_text())


if __name__ == "__main__":
    sys.exit(main())
