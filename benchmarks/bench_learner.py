"""The real learner at a real shape: one CHORD step of 10k-token rows through DeepSpeed ZeRO-3 (bf16,
packed token-budget micro-batches) on one GPU; step time, tokens/s and peak GPU memory per variant,
each as a ratio to `loss.impl=torch` (full logits) measured in the same run.

    python benchmarks/bench_learner.py --gpu [--shape qwen2.5-1.5b] [--steps 3]
        writes benchmarks/results/learner_<gpu>_<shape>_<date>.{md,json}
    python benchmarks/bench_learner.py --dry-run     # tiny shape on CPU: checks the script, measures nothing
The model is a random init of the shape's published config (no download); the batch is synthetic:
8 rollouts (512-token prompts, responses up to 9,800 tokens) and 4 expert rows, ~50k tokens, so loss
and gradients are meaningless but every kernel, collective and allocation is the real one. Each
variant runs in its own process so peak memory is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Qwen2.5 configs (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings)
SHAPES = {
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "tiny": (64, 128, 2, 2, 1, 1000, False),
}
VARIANTS = {  # name -> recipe overrides
    "torch": ["loss.impl=torch"],
    "triton": ["loss.impl=triton"],
    "triton+gc": ["loss.impl=triton", "model.gradient_checkpointing=true"],
}
PROMPT, RESPONSES, EXPERTS, BUDGET = (512, [9800, 7000, 6000, 4000, 3000, 2500, 1500, 800], [8000, 5000, 3000, 2000],
                                      16384)


def build_model(shape: str, path: Path) -> Path:
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    h, i, n, heads, kv, v, tied = SHAPES[shape]
    cfg = Qwen2Config(vocab_size=v, hidden_size=h, intermediate_size=i, num_hidden_layers=n,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=32768,
                      tie_word_embeddings=tied, torch_dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # GPU init: seconds, not minutes
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path)
    return path


def rows(vocab: int, scale: float):
    import torch

    from chord.batching import Row

    g = torch.Generator().manual_seed(0)
    out = []
    p = max(2, int(PROMPT * scale))
    for r in (max(1, int(x * scale)) for x in RESPONSES):
        ids = torch.randint(0, vocab, (p + r,), generator=g).tolist()
        old = [0.0] * (p - 1) + (-torch.rand(r, generator=g) * 3).tolist()
        out.append(Row(ids, [0] * (p - 1) + [1] * r, old, float(torch.randn(1, generator=g))))
    for n in (max(2, int(x * scale)) for x in EXPERTS):
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        out.append(Row(ids, [0] * 63 + [2] * (n - 64) if n > 64 else [2] * (n - 1), [0.0] * (n - 1), 0.0))
    return out


def child(model: str, variant: str, steps: int, scale: float) -> dict:
    import torch

    from chord.batching import collate, count_tokens, plan_micro_batches
    from chord.build import build_learner
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed

    init_distributed()
    cuda = torch.cuda.is_available()
    budget = max(64, int(BUDGET * scale))
    over = [f"model.path={model}", "deepspeed.zero_stage=3", f"trainer.max_tokens_per_micro_batch={budget}",
            f"data.prompts.max_prompt_length={max(2, int(PROMPT * scale))}",
            f"rollout.max_new_tokens={budget - max(2, int(PROMPT * scale))}", f"data.expert.max_length={budget}",
            "trainer.lr=1e-6", *VARIANTS[variant]]
    if cuda:
        over += ["model.dtype=bfloat16", "deepspeed.bf16=true"]
    cfg = load_config(None, over)
    learner = build_learner(cfg, model)
    batch = rows(json.loads((Path(model) / "config.json").read_text())["vocab_size"], scale)
    plan = plan_micro_batches(batch, 1, max_tokens=budget, rows_per_micro=1, packed=True)[0]
    micro = [collate(b, 0, True) for b in plan]
    n_r, n_e = count_tokens(batch)
    tokens = sum(len(r.input_ids) for r in batch)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    learner.train_step(micro, 0.3, n_r, n_e)  # warm-up: Triton compile, ZeRO-3 prefetch buffers
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        m = learner.train_step(micro, 0.3, n_r, n_e)
        losses.append(float(m["loss/total"]))
        sync()
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return {"variant": variant, "tokens": tokens, "micro_batches": len(micro), "step_s": round(med, 3),
            "tokens_per_s": round(tokens / med), "step_times": [round(t, 3) for t in times], "losses": losses,
            "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=[s for s in SHAPES if s != "tiny"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/chord-bench-learner")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(*a.child, a.steps, a.scale)), flush=True)
        return 0
    if not (a.gpu or a.dry_run):
        ap.error("pass --gpu (one CUDA GPU) or --dry-run (tiny shape on CPU)")
    import torch

    shape, scale = ("tiny", 0.01) if a.dry_run else (a.shape, 1.0)
    if a.gpu and not torch.cuda.is_available():
        ap.error("--gpu: no CUDA GPU visible")
    model = build_model(shape, Path(a.work) / shape)
    name = torch.cuda.get_device_name().replace(" ", "_") if a.gpu else "cpu-dry-run"
    stem = RESULTS / f"learner_{name}_{shape}_{dt.date.today().isoformat()}"
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    results = []
    for variant in VARIANTS:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"TRITON_INTERPRET": "1"} if a.dry_run else {})}
        p = subprocess.run([sys.executable, __file__, "--child", str(model), variant, "--steps", str(a.steps),
                            "--scale", str(scale)], cwd=ROOT, capture_output=True, text=True, env=env)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        results.append(json.loads(line[7:]) if line else {"variant": variant, "error": (p.stderr or p.stdout)[-1500:]})
        print(json.dumps(results[-1])[:2000], flush=True)
        if not a.dry_run:
            write(stem, shape, sha, results)
    return 0 if all("error" not in r for r in results) else 1


def write(stem: Path, shape: str, sha: str, results: list[dict]) -> None:
    import torch

    base = next((r for r in results if r["variant"] == "torch" and "error" not in r), None)
    md = [f"# Learner step on {torch.cuda.get_device_name()}: {shape}, ZeRO-3 bf16, packed micro-batches "
          f"({dt.date.today().isoformat()}, commit {sha})", "",
          f"Rows: 8 rollouts ({PROMPT}-token prompts, responses {RESPONSES}) + 4 expert rows {EXPERTS}; token "
          f"budget {BUDGET} per micro-batch. Median of the timed steps after one warm-up step. Ratios are to "
          "`loss.impl=torch` (full [tokens, vocab] logits) in the same run. Command: "
          f"`python benchmarks/bench_learner.py --gpu --shape {shape}`.", "",
          "| variant | micro-batches | tokens | step s | tokens/s | peak GiB | time / torch | memory / torch |",
          "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            md.append(f"| {r['variant']} | error: `{r['error'].strip().splitlines()[-1][:150]}` | | | | | | |")
            continue
        t = f"{r['step_s'] / base['step_s']:.2f}x" if base else "-"
        m = f"{r['peak_GiB'] / base['peak_GiB']:.2f}x" if base else "-"
        md.append(f"| {r['variant']} | {r['micro_batches']} | {r['tokens']} | {r['step_s']} | {r['tokens_per_s']} | "
                  f"{r['peak_GiB']} | {t} | {m} |")
    # not with_suffix: the shape's "2.5" would be taken for one
    Path(f"{stem}.md").write_text("\n".join(md) + "\n")
    Path(f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
