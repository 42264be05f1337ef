"""Peak host memory per rank of a ZeRO-3 learner at 2 ranks on CPU: the policy loaded whole on every rank
(then partitioned by deepspeed.initialize) vs loaded partitioned (chord.build.build_learner: transformers
creates it under deepspeed.zero.Init inside chord's partitioned_loading), plus whether the learner ends up
with bit-identical weights both ways.

    python benchmarks/bench_zero3_load.py [--modes whole,partitioned,partitioned_dscomm]
        builds (once, cached under .cache/zero3_load/) a random-init fp32 Qwen2 of ~0.37B parameters in its
        own process, runs tests/integration/zero3_load.py once per mode (2 ranks, one mode after the other),
        writes benchmarks/results/zero3_host_memory_cpu_<date>.md and .json

`partitioned_dscomm` is a diagnosis, not chord's path: chord's build_learner after deepspeed.comm was
initialized (deepspeed.init_distributed), which deepspeed.zero.Init needs to see the world size.
Memory only: the timings in the JSON come from a shared machine and are not measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB, MIB = 2**30, 2**20


def model_args(a: argparse.Namespace) -> dict:
    dtype = {} if a.checkpoint_dtype == "float32" else {"checkpoint_dtype": a.checkpoint_dtype}  # float32: old key
    return {**dtype, "hidden_size": a.hidden, "num_hidden_layers": a.layers, "intermediate_size": a.intermediate,
            "vocab_size": a.vocab, "num_attention_heads": a.heads, "num_key_value_heads": a.heads,
            "head_dim": a.hidden // a.heads, "max_position_embeddings": 2048, "tie_word_embeddings": False}


def build_model(out: Path, args: dict) -> None:
    """Random-init fp32 Qwen2 saved with save_pretrained (run in a child process: its memory is gone after)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = {k: v for k, v in args.items() if k != "checkpoint_dtype"}
    dtype = args.get("checkpoint_dtype", "float32")
    model = Qwen2ForCausalLM(Qwen2Config(**cfg, torch_dtype="float32")).to(getattr(torch, dtype))
    model.config.torch_dtype = dtype
    n = sum(p.numel() for p in model.parameters())
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    model.save_pretrained(str(tmp))
    (tmp / "bench_model.json").write_text(json.dumps({"args": args, "parameters": n, "fp32_bytes": 4 * n,
                                                        "checkpoint_dtype": dtype}))
    os.replace(tmp, out)


def cached_model(cache: Path, args: dict) -> Path:
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    out = cache / f"qwen2-random-{key}"
    if not (out / "bench_model.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"building {out} ...", flush=True)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, __file__, "--build-into", str(out), "--args-json", json.dumps(args)],
                           cwd=ROOT)
        if p.returncode:
            raise SystemExit(f"model build failed: exit {p.returncode}")
        print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def key_error_lines(stderr: str) -> list[str]:
    """Rank 0's traceback, shortened to its frames in chord, transformers and deepspeed and its exception lines."""
    lines = [x.removeprefix("[rank0]: ") for x in stderr.splitlines() if x.startswith("[rank0]: ")]
    keep = [x.strip() for x in lines
            if re.search(r'File ".*(chord|transformers|deepspeed|zero3_load)[^"]*", line \d+', x)
            or re.match(r"[\w.]*(Error|Exception)\b", x)]
    return keep[-14:] if keep else stderr.splitlines()[-20:]


def run_mode(model_dir: Path, mode: str, work: Path, overrides: list[str], extra_env: dict) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = work / f"{mode}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "tests.integration.zero3_load", str(model_dir), str(out), mode, *overrides]
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **extra_env}
    print(f"{mode}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    (work / f"{mode}.log").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    if p.returncode or not out.exists():
        print(f"{mode}: FAILED (exit {p.returncode}), log {work / f'{mode}.log'}", flush=True)
        return {"mode": mode, "ok": False, "exit": p.returncode, "wall_s": wall, "error": key_error_lines(p.stderr)}
    res = json.loads(out.read_text())
    for r in res["ranks"]:
        r.pop("tensor_sha256")
    peaks = ", ".join(f"rank {r['rank']} {r['peak_rss'] / GIB:.2f} GiB" for r in res["ranks"])
    print(f"{mode}: ok, peak RSS {peaks}", flush=True)
    return {"mode": mode, "ok": True, "exit": 0, "wall_s": wall, **res}


def machine() -> dict:
    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.processor())
    mem = next(int(x.split()[1]) * 1024 for x in Path("/proc/meminfo").read_text().splitlines()
               if x.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_bytes": mem, "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "deepspeed", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    spec = importlib.util.find_spec("accelerate")
    out["accelerate_from"] = spec.origin if spec else None
    return out


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def report(res: dict) -> list[str]:
    m, mod, runs = res["machine"], res["model"], {r["mode"]: r for r in res["runs"]}
    dirty = f" (uncommitted changes in {res['chord_dirty']})" if res["chord_dirty"] else ""
    acc = res["versions"]["accelerate_from"]
    md = [f"# ZeRO-3 host memory at load, 2 ranks, CPU ({res['date']})", "",
          f"* Commit `{res['commit']}`{dirty}; command `{res['command']}`.",
          f"* Machine: {m['cpu']}, {m['cores']} cores, {gib(m['ram_bytes'])} GiB RAM; Python {m['python']}; "
          + ", ".join(f"{k} {v}" for k, v in res["versions"].items() if k != "accelerate_from")
          + (f" (accelerate imported from `{acc}`)" if acc else ""),
          f"* Model: random-init Qwen2, {mod['parameters'] / 1e6:.1f}M parameters, fp32 "
          f"{mod['fp32_bytes'] / GIB:.2f} GiB ({mod['fp32_bytes'] / 1e9:.2f} GB); "
          + ", ".join(f"{k}={v}" for k, v in mod["args"].items())
          + f"; saved in {mod.get('checkpoint_dtype', 'float32')} (safetensors).",
          f"* chord overrides: `{' '.join(['deepspeed.zero_stage=3', *res['overrides']])}` (model.dtype float32 "
          f"unless overridden); rank environment: {res['env'] or 'glibc malloc defaults'}.",
          "* Per rank: `peak RSS` = VmHWM of the rank's process once the learner is built (imports, load, "
          "deepspeed.initialize); `before` = VmRSS after imports and init_distributed; `sampled anon/file` = "
          "max RssAnon / RssFile sampled every 5 ms during the build (file pages include the mmapped "
          "safetensors). ZeRO-3, torch AdamW, gloo; no KL reference. The CPU was shared with other "
          "work: memory only, no timings.",
          "", "| mode | rank | before (GiB) | peak RSS (GiB) | peak - before (GiB) | sampled anon (GiB) | "
          "sampled file (GiB) | after load (GiB) | loaded under zero.Init | weights sha256 |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, r in runs.items():
        if not r["ok"]:
            md.append(f"| {mode} | - | failed (exit {r['exit']}) | | | | | | | |")
            continue
        for x in r["ranks"]:
            ld = x["loads"][0] if x["loads"] else {}
            md.append(f"| {mode} | {x['rank']} | {gib(x['rss_before_load'])} | {gib(x['peak_rss'])} | "
                      f"{gib(x['peak_rss'] - x['rss_before_load'])} | {gib(x['sampled_peak_rss_anon'])} | "
                      f"{gib(x['sampled_peak_rss_file'])} | {gib(ld.get('rss_after_load', 0))} | "
                      f"{ld.get('zero3_enabled')} | `{x['weights_sha256'][:16]}` |")
    md += ["", "## Ratios and weights", ""]
    md += [f"* {line}" for line in res["summary"]]
    failed = [r for r in runs.values() if not r["ok"]]
    for r in failed:
        md += ["", f"## `{r['mode']}` failed (exit {r['exit']})", "", "Key lines of rank 0's traceback:", "", "```",
               *r["error"], "```"]
    return md


def summarize(runs: dict) -> list[str]:
    out = []
    whole = runs.get("whole")
    ok = {m: r for m, r in runs.items() if r["ok"]}
    for mode, r in ok.items():
        if mode == "whole" or not whole or not whole["ok"]:
            continue
        ratios = [p["peak_rss"] / w["peak_rss"] for p, w in zip(r["ranks"], whole["ranks"])]
        deltas = [(p["peak_rss"] - p["rss_before_load"]) / (w["peak_rss"] - w["rss_before_load"])
                  for p, w in zip(r["ranks"], whole["ranks"])]
        out.append(f"{mode} / whole peak RSS: " + ", ".join(f"rank {i} {x:.3f}" for i, x in enumerate(ratios))
                   + "; over the pre-load baseline: " + ", ".join(f"rank {i} {x:.3f}" for i, x in enumerate(deltas)))
    digests = {(m, x["rank"]): x["weights_sha256"] for m, r in ok.items() for x in r["ranks"]}
    if digests:
        same = len(set(digests.values())) == 1
        out.append(f"weights sha256 over all parameters gathered in full: {'identical' if same else 'DIFFER'} "
                   f"across {', '.join(f'{m}/rank {k}' for m, k in digests)}")
    for m, r in runs.items():
        if not r["ok"]:
            out.append(f"{m}: failed, no numbers (error below)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="whole,partitioned,partitioned_dscomm")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--checkpoint-dtype", default="float32", choices=("float32", "bfloat16"),
                    help="dtype the model folder is saved in (the learner loads model.dtype, float32 by default)")
    ap.add_argument("--override", action="append", default=[], help="KEY=VALUE for chord's config, repeatable")
    ap.add_argument("--malloc-mmap-threshold", type=int,
                    help="MALLOC_MMAP_THRESHOLD_ for the ranks (glibc's dynamic threshold otherwise keeps freed "
                         "big blocks in the heap, counted in RSS)")
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "zero3_load"))
    ap.add_argument("--work", default="/tmp/chord-zero3-load")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--build-into", help=argparse.SUPPRESS)
    ap.add_argument("--args-json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build_into:
        build_model(Path(a.build_into), json.loads(a.args_json))
        return 0
    model_dir = cached_model(Path(a.cache), model_args(a))
    mod = json.loads((model_dir / "bench_model.json").read_text())
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = {}
    extra_env = {} if a.malloc_mmap_threshold is None else {"MALLOC_MMAP_THRESHOLD_": str(a.malloc_mmap_threshold)}
    for mode in a.modes.split(","):
        runs[mode] = run_mode(model_dir, mode, work, a.override, extra_env)
    date = dt.date.today().isoformat()
    dirty = git("status", "--porcelain", "--", "chord")
    res = {"date": date, "commit": git("rev-parse", "--short", "HEAD"),
           "chord_dirty": ", ".join(x.split()[-1] for x in dirty.splitlines()),
           "command": "python benchmarks/bench_zero3_load.py " + " ".join(sys.argv[1:]),
           "machine": machine(), "versions": versions(), "model": {**mod, "dir": str(model_dir)},
           "overrides": a.override, "env": extra_env,
           "runs": list(runs.values()), "summary": summarize(runs)}
    base = Path(a.results) / f"zero3_host_memory_cpu_{date}"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    base.with_suffix(".md").write_text("\n".join(report(res)) + "\n")
    print(base.with_suffix(".md").read_text())
    return 0 if all(r["ok"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
