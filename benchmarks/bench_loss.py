"""Benchmark the fused CHORD loss: time and peak memory of naive / chunked / triton vs bare GEMMs.

GPU (one command; writes benchmarks/results/loss_<gpu>_<date>.{csv,md}):
    python benchmarks/bench_loss.py --gpu
  shapes: the Qwen2.5-7B head (H=3584, V=152064) at N = 2048, 8192, 32768 in bf16; baselines
  measured in the same run: the bare lm_head GEMMs (x W^T, dX = dZ W, dW = dZ^T x) and, when
  installed, Liger's fused linear cross-entropy (peer). Ratios are against those baselines.
CPU (peak extra memory, the issue's bar: chunked <= 5% of naive's extra memory):
    python benchmarks/bench_loss.py --cpu            # N=8192, H=512, V=32000, fp32
Each CPU measurement runs in a fresh subprocess and reads the kernel's peak RSS (VmHWM after
resetting it through /proc/self/clear_refs), minus the RSS with inputs allocated.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def commit() -> str:
    try:
        sha = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
        dirty = subprocess.run(["git", "diff", "--quiet"], cwd=ROOT).returncode != 0
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def inputs(n: int, h: int, v: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.randn(n, h, generator=g) * 0.5).to(device, dtype).requires_grad_()
    w = (torch.randn(v, h, generator=g) * 0.02).to(device, dtype).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g).to(device)
    kind = torch.randint(1, 3, (n,), generator=g).to(device)
    old = (-torch.rand(n, generator=g) * 3).to(device)
    adv = torch.randn(n, generator=g).to(device)
    return x, w, y, kind, old, adv


def run_op(impl: str, x, w, y, kind, old, adv, chunk: int) -> None:
    from chord_kernels import chord_loss

    out = chord_loss(x, w, y, kind, old, adv, mu=0.1, n_rollout=float((kind == 1).sum()),
                     n_expert=float((kind == 2).sum()), impl=impl, chunk_size=chunk)
    out.loss.backward()


# -- CPU memory -------------------------------------------------------------------------------------
def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def cpu_child(impl: str, n: int, h: int, v: int, chunk: int) -> dict:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    x, w, y, kind, old, adv = inputs(n, h, v, torch.float32, "cpu")
    grads = x.numel() * 4 + w.numel() * 4  # dx and dW: outputs every implementation must hold
    base = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    run_op(impl, x, w, y, kind, old, adv, chunk)
    secs = time.perf_counter() - t0
    peak = _rss("VmHWM")
    return {"impl": impl, "extra_bytes": peak - base, "extra_minus_grads": peak - base - grads, "seconds": secs}


def cpu_main(n: int, h: int, v: int, chunk: int) -> None:
    rows = []
    for impl in ("naive", "chunked"):
        out = subprocess.check_output([sys.executable, __file__, "--cpu-child", impl, str(n), str(h), str(v), str(chunk)],
                                      text=True)
        rows.append(json.loads(out.strip().splitlines()[-1]))
    naive, chunked = rows
    ratio = chunked["extra_minus_grads"] / naive["extra_minus_grads"]
    meta = {"device": "cpu", "cores": os.cpu_count(), "date": dt.date.today().isoformat(), "commit": commit(),
            "N": n, "H": h, "V": v, "dtype": "float32", "chunk": chunk}
    stem = RESULTS / f"loss_cpu_memory_{meta['date']}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        wtr = csv.DictWriter(f, fieldnames=[*meta, "impl", "extra_MiB", "extra_minus_grads_MiB", "seconds"])
        wtr.writeheader()
        for r in rows:
            wtr.writerow({**meta, "impl": r["impl"], "extra_MiB": round(r["extra_bytes"] / 2**20, 1),
                          "extra_minus_grads_MiB": round(r["extra_minus_grads"] / 2**20, 1), "seconds": round(r["seconds"], 3)})
    lines = [f"# CHORD loss, CPU peak memory ({meta['date']}, commit {meta['commit']}, {meta['cores']} cores)", "",
             f"N={n}, H={h}, V={v}, fp32, chunk={chunk}; forward + backward incl. dW. 'extra' = peak RSS minus RSS with "
             "inputs allocated; 'net' also subtracts dx and dW, which every implementation must return.", "",
             "| impl | extra MiB | net MiB | seconds |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['extra_bytes'] / 2**20:.1f} | {r['extra_minus_grads'] / 2**20:.1f} | {r['seconds']:.2f} |")
    lines += ["", f"chunked / naive net extra memory: **{ratio:.1%}** (bar: <= 5%)"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# -- GPU timing ------------------------------------------------------------------------------------
def cuda_time(fn, warmup: int = 3, reps: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def bench_shape(n: int, h: int, v: int, chunk: int, name: str) -> list[dict]:
    x, w, y, kind, old, adv = inputs(n, h, v, torch.bfloat16, "cuda")
    xd, wd = x.detach(), w.detach()
    base = {"gemm_fwd": cuda_time(lambda: xd @ wd.t())}
    if n * v * 2 < 12 * 2**30:  # dZ for the dX/dW baseline GEMMs fits beside everything else
        dz = torch.randn(n, v, device="cuda", dtype=torch.bfloat16)
        base["gemm_fwd_dx_dw"] = cuda_time(lambda: (xd @ wd.t(), dz @ wd, dz.t() @ xd))
        del dz
    cases = {f"chord_{impl}": (lambda impl=impl: run_op(impl, x, w, y, kind, old, adv, chunk))
             for impl in ("naive", "chunked", "triton")}
    cases["chord_triton_forward_only"] = lambda: __import__("chord_kernels").token_logprobs(xd, wd, y, impl="triton")
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        lce = LigerFusedLinearCrossEntropyLoss()
        cases["liger_flce"] = lambda: lce(w, x, y).backward()
    except ImportError:
        pass
    rows = []
    for label, fn in cases.items():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        try:
            ms = cuda_time(lambda fn=fn: (fn(), setattr(x, "grad", None), setattr(w, "grad", None)), reps=5)
            peak = (torch.cuda.max_memory_allocated() - start) / 2**30
        except torch.cuda.OutOfMemoryError:
            ms, peak = float("nan"), float("nan")
        ref = base["gemm_fwd"] if label.endswith("forward_only") else base.get("gemm_fwd_dx_dw", float("nan"))
        rows.append({"gpu": name, "date": dt.date.today().isoformat(), "commit": commit(), "N": n, "H": h, "V": v,
                     "dtype": "bf16", "case": label, "ms": round(ms, 3), "peak_GiB": round(peak, 3),
                     "x_bare_gemms": round(ms / ref, 3), **{f"bare_{k}_ms": round(t, 3) for k, t in base.items()}})
        print(rows[-1], flush=True)
    return rows


def gpu_main(ns: list[int], h: int, v: int, chunk: int) -> None:
    name = torch.cuda.get_device_name()
    rows = [r for n in ns for r in bench_shape(n, h, v, chunk, name)]
    stem = RESULTS / f"loss_{name.replace(' ', '_')}_{dt.date.today().isoformat()}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        wtr = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        wtr.writeheader()
        wtr.writerows(rows)
    md = ["| N | case | ms | x bare GEMMs | peak GiB |", "|---|---|---|---|---|"]
    md += [f"| {r['N']} | {r['case']} | {r['ms']} | {r['x_bare_gemms']} | {r['peak_GiB']} |" for r in rows]
    stem.with_suffix(".md").write_text(f"# CHORD loss on {name}, commit {commit()}\n\n" + "\n".join(md) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu-child":
        impl, n, h, v, chunk = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(cpu_child(impl, n, h, v, chunk)))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--chunk", type=int, default=None)
    a = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.gpu:
        gpu_main([2048, 8192, 32768], 3584, 152064, a.chunk or 1024)
    else:
        cpu_main(8192, 512, 32000, a.chunk or 256)
