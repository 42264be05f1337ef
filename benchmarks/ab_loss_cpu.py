"""A/B speed check of the fused loss on CPU: a git ref (the baseline) vs this working tree, interleaved.

    python benchmarks/ab_loss_cpu.py BASE_REF [--impl chunked] [--pairs 4] [--n 8192 --h 512 --v 32000]

Checks BASE_REF out into a temporary git worktree and runs `benchmarks/bench_loss.py --cpu-child`
(one forward + backward incl. dW of the CHORD loss, in a fresh process) from it and from this tree in
turn: base, new, base, new, ... Reports the median seconds and peak extra memory of each and the
ratio new / base; writes benchmarks/results/loss_ab_cpu_<date>.md. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(tree: Path, shim: Path, impl: str, n: int, h: int, v: int, chunk: int) -> dict:
    """bench_loss's CPU child run with `tree`'s chord and chord_kernels (kernels/ linked under `shim`)."""
    if not (shim / "chord_kernels").exists():
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "chord_kernels").symlink_to(tree / "kernels")
    env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{tree}"}
    out = subprocess.run([sys.executable, str(tree / "benchmarks/bench_loss.py"), "--cpu-child", impl, str(n), str(h),
                          str(v), str(chunk)], cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{tree}: bench_loss child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("--impl", default="chunked")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--h", type=int, default=512)
    p.add_argument("--v", type=int, default=32000)
    p.add_argument("--chunk", type=int, default=256)
    a = p.parse_args()
    sha = lambda ref: subprocess.check_output(["git", "rev-parse", "--short=12", ref], cwd=ROOT,  # noqa: E731
                                              text=True).strip()
    base_sha, head = sha(a.base), sha("HEAD")
    dirty = bool(subprocess.check_output(["git", "status", "--porcelain", "kernels", "chord"], cwd=ROOT,
                                         text=True).strip())
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), base_sha], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            runs: dict[str, list[dict]] = {"base": [], "new": []}
            for i in range(a.pairs):
                for name, tree in (("base", wt), ("new", ROOT)):
                    r = child(tree, Path(tmp) / f"shim-{name}", a.impl, a.n, a.h, a.v, a.chunk)
                    runs[name].append(r)
                    print(f"pair {i} {name}: {r['seconds']:.3f} s, extra {r['extra_bytes'] / 2**20:.1f} MiB",
                          flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    med = {k: (statistics.median(r["seconds"] for r in v), statistics.median(r["extra_bytes"] for r in v))
           for k, v in runs.items()}
    t_ratio, m_ratio = med["new"][0] / med["base"][0], med["new"][1] / med["base"][1]
    spread = {k: (min(r["seconds"] for r in v), max(r["seconds"] for r in v)) for k, v in runs.items()}
    out = ROOT / "benchmarks" / "results" / f"loss_ab_cpu_{dt.date.today().isoformat()}.md"
    out.write_text(f"""# Fused loss A/B on CPU: {a.impl}, base {base_sha} vs new \
{head}{' +uncommitted' if dirty else ''}

Command: `python benchmarks/ab_loss_cpu.py {' '.join(sys.argv[1:])}`; {dt.datetime.now().isoformat(timespec='seconds')};
{os.cpu_count()} cores. One forward + backward incl. dW, N={a.n}, H={a.h}, V={a.v}, fp32, chunk={a.chunk};
each run a fresh process, base and new interleaved x {a.pairs}.

| | base | new | new / base |
|---|---|---|---|
| seconds (median; min-max) | {med['base'][0]:.3f} ({spread['base'][0]:.3f}-{spread['base'][1]:.3f}) | \
{med['new'][0]:.3f} ({spread['new'][0]:.3f}-{spread['new'][1]:.3f}) | **{t_ratio:.3f}x** |
| peak extra memory MiB (median) | {med['base'][1] / 2**20:.1f} | {med['new'][1] / 2**20:.1f} | **{m_ratio:.3f}x** |
""")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
