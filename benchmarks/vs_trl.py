"""chord against TRL's GRPOTrainer on CPU: the same work per step, per-step wall and CPU time, side by side.

TRL is never a dependency of chord: it goes into its own folder (git-ignored), and only the TRL side's
processes see it (PYTHONPATH). TRL 1.16 needs accelerate, datasets, huggingface_hub, jinja2, numpy,
packaging, pandas, psutil, pyarrow, pyyaml and transformers, all already in chord's .venv at versions it
accepts (accelerate 1.16, datasets 5.2, transformers 5.19), so TRL itself is the only install:

    .venv/bin/pip install --target .bench/trl --no-deps trl==1.16.0

Then, on a quiet machine (nothing else running: the numbers are per-step times):

    python benchmarks/vs_trl.py                       # full: 2 regimes x ranks 1,2 x 2 seeds x 20 steps, A B A B
    python benchmarks/vs_trl.py --quick               # smoke: 1 seed, 6 steps, both regimes, 1 rank (~1.5 min)
    python benchmarks/vs_trl.py --quick --ranks 2 --regimes short
    python benchmarks/vs_trl.py --profile-steps 10    # also a cProfile of 10 chord steps (short, 1 rank)

The same work on both sides (every value below is read from chord's resolved recipe, then given to TRL):
chord's built-in `tiny` model (the TRL side loads the same save_pretrained folder); the prompts in chord's order
(chord.data.streams.ShuffledStream(items, seed=run.seed), handed to TRL as a dataset with shuffle_dataset=False,
their token ids checked equal); B x K = 16 x 8 rollouts per optimizer step and one generate call per optimizer
step (TRL: generation_batch_size = per_device_train_batch_size x ranks x gradient_accumulation_steps,
steps_per_generation = gradient_accumulation_steps, num_iterations = 1: its old log-probs then need no extra
forward, as chord's come from the engine); micro-batches of trainer.micro_batch_size rows per rank; temperature,
top_p (top_k 0), max_new_tokens; AdamW lr, betas, eps, weight decay, constant schedule; grad clip; PPO clip 0.2;
no KL (beta 0); group-std advantages; a token mean over the whole step (TRL's loss_type="dapo": token losses over
the active tokens of the global accumulated batch; "bnpo" would divide per micro-batch, "grpo" per sequence);
fp32 (TRL's bf16 and gradient-checkpointing defaults turned off); chord's `tiny` reward (chord/tasks/tiny.py).
chord runs recipes/tiny_grpo.yaml (vLLM rollouts, DeepSpeed ZeRO-0 learner), TRL runs HF generate (use_vllm=False).

Regimes: short = the tiny task as it is (answers of ~6 tokens, max_new_tokens 48); long = every response exactly
`--long-tokens` (96) tokens: chord with rollout.ignore_eos=true (EOS sampled and run past), TRL with
generation_kwargs min_new_tokens = max_new_tokens (EOS suppressed: its HF path cuts a completion at the first EOS).

Measured per step on each side: wall time between consecutive optimizer-step ends, process CPU time (the process
tree: vLLM's engine process at 2 ranks too; summed over ranks), generation vs learner time (chord's metrics.jsonl
time/generate, time/learner, time/weight_sync; TRL: timers around GRPOTrainer._generate_single_turn (HF generate),
_generate_and_score_completions (generate + decode + reward + advantages), training_step minus that, and the
grad clip + optimizer step), response tokens per second, the reward curve. Runs are interleaved chord, TRL,
chord, TRL over the seeds; the report takes each run's median over steps 4..N and the TRL / chord ratio of
their medians. Writes benchmarks/results/vs_trl_cpu_<date>.json and .md (vs_trl_cpu_smoke_<date>.* with --quick),
with provenance: commit, versions, CPU, nproc, load average before and after every run, the exact commands.
Run folders (logs, metrics) go to .bench/runs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRL_DIR = ROOT / ".bench" / "trl"
RECIPE = "recipes/tiny_grpo.yaml"
FIRST_MEASURED = 4  # steps 1-3 hold warm-up (allocator, vLLM's first batches, Adam's state): medians from step 4
SIDES = ("chord", "trl")
PY = sys.executable


# -- the same settings on both sides -------------------------------------------------------------------------------

def chord_overrides(regime: str, seed: int, steps: int, out: Path, long_tokens: int) -> list[str]:
    """recipes/tiny_grpo.yaml plus what the comparison fixes: no trackers, bar, checkpoint or resume."""
    over = [f"run.seed={seed}", f"run.output_dir={out}", f"trainer.steps={steps}", "trainer.save_at_end=false",
            "trainer.resume=none", "logging.trackers=[]", "logging.progress_bar=false"]
    if regime == "long":
        over += [f"rollout.max_new_tokens={long_tokens}", "rollout.ignore_eos=true"]
    return over


def trl_settings(cfg: Any, world: int) -> dict[str, Any]:
    """GRPOConfig arguments equal to chord's resolved recipe; refuses settings TRL would compute differently."""
    t, a, r = cfg.trainer, cfg.algorithm, cfg.rollout
    checks = {"algorithm.loss_agg_mode": (a.loss_agg_mode, "token-mean"), "algorithm.kl_coef": (a.kl_coef, 0.0),
              "trainer.lr_schedule": (t.lr_schedule, "constant"), "trainer.lr_warmup_steps": (t.lr_warmup_steps, 0),
              "model.dtype": (cfg.model.dtype, "float32"), "algorithm.clip_eps_high": (a.clip_eps_high, a.clip_eps_low),
              "algorithm.mu.peak": (a.mu.peak, 0.0), "algorithm.mu.valley": (a.mu.valley, 0.0),
              "algorithm.entropy_coef": (a.entropy_coef, 0.0), "algorithm.dual_clip": (a.dual_clip, None),
              "algorithm.tis_cap": (a.tis_cap, None), "algorithm.filter_groups": (a.filter_groups, False),
              "trainer.max_tokens_per_micro_batch": (t.max_tokens_per_micro_batch, None)}
    for key, (have, want) in checks.items():
        if have != want:
            raise SystemExit(f"vs_trl: {key} = {have}, the comparison needs {want}")
    rows = t.prompts_per_step * t.samples_per_prompt
    if rows % (world * t.micro_batch_size):
        raise SystemExit(f"vs_trl: {rows} rollouts do not split into micro-batches of {t.micro_batch_size} x {world}")
    accum = rows // (world * t.micro_batch_size)
    gen = {"min_new_tokens": r.max_new_tokens} if r.ignore_eos else None
    return dict(
        per_device_train_batch_size=t.micro_batch_size, gradient_accumulation_steps=accum,
        num_generations=t.samples_per_prompt, num_iterations=1, max_completion_length=r.max_new_tokens,
        temperature=r.temperature, top_p=r.top_p, top_k=0, generation_kwargs=gen, use_vllm=False,
        learning_rate=t.lr, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_epsilon=t.adam_eps,
        weight_decay=t.weight_decay, optim="adamw_torch", lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=t.grad_clip, beta=0.0, epsilon=a.clip_eps_low, loss_type="dapo", scale_rewards=a.scale_rewards,
        mask_truncated_completions=False, max_steps=t.steps, seed=cfg.run.seed, shuffle_dataset=False,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        log_completions=False)


def prompt_rows(cfg: Any) -> tuple[str, list[dict[str, Any]]]:
    """chord's model folder and the prompts its run will draw, in its order: trainer.steps batches of B."""
    from chord.build import build_data
    from chord.models.load import load_tokenizer, resolve_model_path

    path = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.revision)
    tok = load_tokenizer(path, cfg.model.chat_template, cfg.model.chat_template_kwargs, chat=True)
    prompts, _ = build_data(cfg, tok)
    batch = prompts.next_batch(cfg.trainer.steps * cfg.trainer.prompts_per_step)
    return path, [{"prompt": tok.decode(p.prompt_ids), "answer": p.answer, "prompt_ids": list(p.prompt_ids)}
                  for p in batch]


def cpu_seconds(proc: Any) -> tuple[float, float]:
    """CPU time of this process tree and, of it, its children's (vLLM's engine process), live and exited."""
    c = proc.cpu_times()
    children = c.children_user + c.children_system
    for child in proc.children(recursive=True):
        try:
            cc = child.cpu_times()
            children += cc.user + cc.system
        except Exception:  # exited in between: counted in children_* once waited for
            pass
    return c.user + c.system + children, children


# -- worker: chord (one rank; torchrun starts two) -------------------------------------------------------------------

def chord_worker(argv: list[str]) -> int:
    """chord/train.py's main with a timestamp and CPU time after each optimizer step (and the weight push that ends
    it), per rank, into TIMING/steps_rank<r>.jsonl; --profile FILE: cProfile around the training loop only."""
    p = argparse.ArgumentParser()
    p.add_argument("--timing", type=Path, required=True)
    p.add_argument("--profile", type=Path, default=None)
    p.add_argument("--profile-after", type=int, default=FIRST_MEASURED - 1, help="warm-up steps left out")
    a, rest = p.parse_known_args(argv)
    import cProfile

    import psutil

    import chord.train as ct

    proc, rank = psutil.Process(), int(os.environ.get("RANK", "0"))
    a.timing.mkdir(parents=True, exist_ok=True)
    out = (a.timing / f"steps_rank{rank}.jsonl").open("w")

    def mark(step: int) -> None:
        cpu, children = cpu_seconds(proc)
        out.write(json.dumps({"step": step, "t": time.perf_counter(), "unix": time.time(), "cpu": cpu,
                              "cpu_children": children}) + "\n")
        out.flush()

    learn, train = ct.learn, ct.train
    # the first steps import, compile (torch.compile'd sampler ops) and warm caches: profiled from the step after
    prof = cProfile.Profile() if a.profile is not None and rank == 0 else None

    def timed_learn(run, step, rows, mu, times):
        m = learn(run, step, rows, mu, times)
        mark(step)
        if prof is not None and step == a.profile_after:
            prof.enable()
        return m

    def timed_train(run, stop, lock):
        mark(0)
        try:
            return train(run, stop, lock)
        finally:
            if prof is not None:
                prof.disable()
                prof.dump_stats(a.profile)

    ct.learn, ct.train = timed_learn, timed_train  # train() looks both up in the module at call time
    try:
        return ct.main(rest)
    finally:
        out.close()


# -- worker: TRL (run with PYTHONPATH=.bench/trl) --------------------------------------------------------------------

def trl_worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import psutil
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from chord.tasks.tiny import tiny_reward

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(spec["seed"])
    rows = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(spec["model"])
    ids = tok([r["prompt"] for r in rows])["input_ids"]
    bad = [i for i, r in enumerate(rows) if ids[i] != r["prompt_ids"]]
    if bad:  # TRL tokenizes the prompt text itself: it must give chord's token ids
        raise SystemExit(f"vs_trl: prompt {bad[0]} tokenizes to {ids[bad[0]]}, chord's is {rows[bad[0]]['prompt_ids']}")
    ds = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32, attn_implementation="sdpa")

    def tiny(completions: list[str], answer: list[str], **_: Any) -> list[float]:
        return [tiny_reward(c, a)[0] for c, a in zip(completions, answer, strict=True)]

    proc = psutil.Process()
    acc: dict[str, float] = {}
    out = (Path(spec["timing"]) / f"steps_rank{rank}.jsonl").open("w")

    def write(row: dict[str, Any]) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()

    class Timing(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            write({"step": 0, "t": time.perf_counter(), "unix": time.time(), "cpu": cpu_seconds(proc)[0]})

        def on_pre_optimizer_step(self, args, state, control, **kw):
            acc["_opt0"] = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            acc["optimizer"] = acc.get("optimizer", 0.0) + time.perf_counter() - acc.pop("_opt0")

        def on_step_end(self, args, state, control, **kw):
            write({"step": state.global_step, "t": time.perf_counter(), "unix": time.time(),
                   "cpu": cpu_seconds(proc)[0], **{k: v for k, v in acc.items() if not k.startswith("_")}})
            acc.clear()

        def on_log(self, args, state, control, logs=None, **kw):
            write({"log_step": state.global_step, "logs": logs or {}})

    args = GRPOConfig(output_dir=spec["out"], **spec["settings"])
    trainer = GRPOTrainer(model=model, reward_funcs=tiny, args=args, train_dataset=ds, processing_class=tok,
                          callbacks=[Timing()])

    def timer(name: str, fn):
        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
        return wrapped

    # instance attributes shadow the methods: TRL calls them through self
    for method, name in (("_generate_single_turn", "generate"), ("_generate_and_score_completions", "rollout"),
                         ("training_step", "micro_steps"), ("_clip_grad_norm", "clip")):
        setattr(trainer, method, timer(name, getattr(trainer, method)))
    if rank == 0:
        print(f"vs_trl: TRL side, {world} rank(s), settings {json.dumps(spec['settings'])}", flush=True)
    trainer.train()
    out.close()
    return 0


# -- the grid ----------------------------------------------------------------------------------------------------

def launcher(ranks: int) -> list[str]:
    if ranks == 1:
        return [PY]
    return [str(Path(PY).with_name("torchrun")), "--standalone", "--nproc_per_node", str(ranks)]


def plan_run(side: str, regime: str, ranks: int, seed: int, a: argparse.Namespace) -> dict[str, Any]:
    """One run: its folder, command and environment (the TRL side's prompt file and settings are written here)."""
    from chord.config import load_config

    d = a.runs / f"{ranks}r_{regime}_{side}_s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    over = chord_overrides(regime, seed, a.steps, d / "chord", a.long_tokens)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = str(Path(__file__).resolve())
    if side == "chord":
        cmd = [*launcher(ranks), script, "_chord", "--timing", str(d / "timing"),
               *(["--profile", str(a.profile_file)] if a.profile_file else []), RECIPE, *over]
    else:
        cfg = load_config(ROOT / RECIPE, over)
        model, rows = prompt_rows(cfg)
        (d / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        spec = {"model": model, "prompts": str(d / "prompts.jsonl"), "timing": str(d / "timing"), "out": str(d / "trl"),
                "seed": seed, "settings": trl_settings(cfg, ranks)}
        (d / "timing").mkdir(exist_ok=True)
        (d / "spec.json").write_text(json.dumps(spec, indent=1))
        cmd = [*launcher(ranks), script, "_trl", str(d / "spec.json")]
        env["PYTHONPATH"] = os.pathsep.join([str(TRL_DIR), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"side": side, "regime": regime, "ranks": ranks, "seed": seed, "dir": d, "cmd": cmd, "env": env}


def execute(r: dict[str, Any], timeout: float) -> dict[str, Any]:
    load0 = os.getloadavg()
    t0 = time.time()
    with (r["dir"] / "run.log").open("w") as log:
        try:
            code = subprocess.run(r["cmd"], cwd=ROOT, env=r["env"], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    r.update(code=code, launch_unix=t0, total_s=time.time() - t0, load_before=load0, load_after=os.getloadavg())
    tail = (r["dir"] / "run.log").read_text().splitlines()[-15:]
    r["log_tail"] = tail if code else []
    print(f"vs_trl: {r['ranks']}r {r['regime']:5s} {r['side']:5s} seed {r['seed']}: exit {code}, "
          f"{r['total_s']:.0f} s, load {load0[0]:.2f} -> {r['load_after'][0]:.2f}", flush=True)
    if code:
        print("\n".join("    " + line for line in tail), flush=True)
    return r


# -- reading the runs back ---------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def step_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step: wall (rank 0), cpu (all ranks), generate, learner, sync, response tokens, reward."""
    timing = sorted(r["dir"].glob("timing/steps_rank*.jsonl"))
    per_rank = [{x["step"]: x for x in read_jsonl(f) if "step" in x} for f in timing]
    if not per_rank or len(per_rank[0]) < 2:
        return []
    r0 = per_rank[0]
    if r["side"] == "chord":
        metrics = {m["step"]: m for m in read_jsonl(r["dir"] / "chord" / "metrics.jsonl") if "step" in m}
    else:
        metrics = {}
        for x in read_jsonl(timing[0]):  # the step's log, then (last step) the run's summary: merged
            if "log_step" in x:
                metrics.setdefault(x["log_step"], {}).update(x["logs"])
    out = []
    for s in sorted(k for k in r0 if k > 0 and k - 1 in r0):
        row: dict[str, Any] = {"step": s, "wall_s": r0[s]["t"] - r0[s - 1]["t"],
                               "cpu_s": sum(pr[s]["cpu"] - pr[s - 1]["cpu"] for pr in per_rank
                                            if s in pr and s - 1 in pr)}
        m = metrics.get(s, {})
        if "cpu_children" in r0[s]:  # chord at 2 ranks: vLLM's engine process (a child of rank 0)
            row["cpu_engine_process_s"] = r0[s]["cpu_children"] - r0[s - 1]["cpu_children"]
        if r["side"] == "chord":
            row.update(generate_s=m.get("time/generate"), learner_s=m.get("time/learner"),
                       weight_sync_s=m.get("time/weight_sync", 0.0), reward_s=m.get("time/reward"),
                       response_tokens=m.get("tokens/rollout"), reward=m.get("reward/mean"),
                       response_len=m.get("response/length_mean"))
        else:
            x = r0[s]
            rollout = x.get("rollout", 0.0)
            row.update(generate_s=x.get("generate"), rollout_s=rollout,
                       learner_s=x.get("micro_steps", 0.0) - rollout + x.get("clip", 0.0) + x.get("optimizer", 0.0),
                       weight_sync_s=0.0, reward=m.get("reward"), response_len=m.get("completions/mean_length"))
            n = r["rows_per_step"]
            row["response_tokens"] = None if row["response_len"] is None else row["response_len"] * n
        if row.get("response_tokens") is not None:
            row["tokens_per_s"] = row["response_tokens"] / row["wall_s"]
            if row.get("generate_s"):
                row["gen_tokens_per_s"] = row["response_tokens"] / row["generate_s"]
        out.append(row)
    if r0.get(0) and r0.get(1):
        r["startup_s"] = r0[0]["unix"] - r["launch_unix"]
    return out


STATS = ("wall_s", "cpu_s", "cpu_engine_process_s", "generate_s", "learner_s", "weight_sync_s", "tokens_per_s",
         "gen_tokens_per_s", "response_len", "reward")


def medians(rows: list[dict[str, Any]], first: int) -> dict[str, float | None]:
    use = [x for x in rows if x["step"] >= first]
    out: dict[str, float | None] = {}
    for k in STATS:
        vals = [x[k] for x in use if x.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    out["steps"] = len(use)
    return out


def summarize(runs: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """One row per (ranks, regime): each side's median over its runs' medians, and TRL / chord per stat."""
    table = []
    for ranks in sorted({r["ranks"] for r in runs}):
        for regime in ("short", "long"):
            sel = [r for r in runs if r["ranks"] == ranks and r["regime"] == regime]
            if not sel:
                continue
            row: dict[str, Any] = {"ranks": ranks, "regime": regime}
            for side in SIDES:
                meds = [r["median"] for r in sel if r["side"] == side and r.get("median") and r["median"]["steps"]]
                row[side] = {k: statistics.median([m[k] for m in meds if m[k] is not None])
                             if any(m[k] is not None for m in meds) else None for k in STATS}
                row[side]["runs"] = len(meds)
            c, t = row["chord"], row["trl"]
            row["ratio_trl_over_chord"] = {k: (t[k] / c[k]) if c.get(k) and t.get(k) is not None else None
                                           for k in ("wall_s", "cpu_s", "generate_s", "learner_s")}
            table.append(row)
    return table


# -- profile ------------------------------------------------------------------------------------------------------

# (label, added, subtracted): "path/suffix.py::function" keys whose cumulative times are added (and subtracted), per
# step. The reference rows (model forward / backward, the engine's model forward) come first; the rest is what a
# step spends outside them: the per-call overheads chord's next speed change targets. Names are vLLM 0.32's.
Key = str
PROFILE_ROWS: list[tuple[str, list[Key], list[Key]]] = [
    ("**step** (collect_rollouts + learn)", ["chord/train.py::collect_rollouts", "chord/train.py::learn"], []),
    ("*reference:* engine model forward (vLLM `_model_forward`, all decode steps)",
     ["vllm/v1/worker/gpu_model_runner.py::_model_forward"], []),
    ("*reference:* learner forward", ["chord/learner/policy_step.py::forward"], []),
    ("*reference:* learner backward (autograd)", ["torch/autograd/__init__.py::backward"], []),
    ("vLLM request intake: prompts rendered, one SamplingParams per prompt (per-request seed), n=K fan-out",
     ["vllm/entrypoints/common/offline.py::_add_completion_requests", "chord/rollout/vllm_engine.py::sampling_params"],
     []),
    ("vLLM scheduler.schedule (KV slots allocated per request per decode step)",
     ["vllm/v1/core/sched/scheduler.py::schedule"], []),
    ("vLLM scheduler.update_from_output", ["vllm/v1/core/sched/scheduler.py::update_from_output"], []),
    ("vLLM model-runner host work (state update, input prep, metadata; forward excluded)",
     ["vllm/v1/worker/gpu_model_runner.py::execute_model"],
     ["vllm/v1/worker/gpu_model_runner.py::_model_forward", "vllm/model_executor/models/qwen2.py::compute_logits"]),
    ("vLLM sampler: seeded per-request sampling + sampled-token log-prob gather",
     ["vllm/v1/executor/uniproc_executor.py::sample_tokens"], []),
    ("  of which: one torch.randint per seeded request per decode step (its generator's draw, a Python loop)",
     ["~::<built-in method torch.randint>"], []),
    ("vLLM log-prob return: Logprob objects per token (incl. decoding each sampled token's text)",
     ["vllm/v1/engine/logprobs.py::update_from_output"], []),
    ("  of which: sampled-token text decode for Logprob.decoded_token (chord reads only .logprob)",
     ["vllm/tokenizers/detokenizer_utils.py::convert_ids_list_to_tokens"], []),
    ("vLLM output processor, rest (incremental detokenizer of the response text, RequestOutput objects)",
     ["vllm/v1/engine/output_processor.py::process_outputs"], ["vllm/v1/engine/logprobs.py::update_from_output"]),
    ("chord: Rollout objects from vLLM outputs (log-prob lists)", ["chord/rollout/vllm_engine.py::generate"],
     ["vllm/entrypoints/llm.py::generate", "chord/rollout/vllm_engine.py::sampling_params"]),
    ("reward scoring + reward/rollout metrics", ["chord/rewards/__init__.py::score_all",
                                                 "chord/train.py::reward_metrics"], []),
    ("group advantages", ["chord/algo/advantage.py::group_advantages"], []),
    ("rollout tensor exchange (all_gather_rollouts; world size 1: none)",
     ["chord/distributed/exchange.py::all_gather_rollouts", "chord/distributed/exchange.py::gather_floats"], []),
    ("host batching: rows, token counts, aggregation scales, micro-batch plan, collate",
     ["chord/batching.py::rollout_row", "chord/batching.py::count_tokens", "chord/batching.py::aggregation_scales",
      "chord/batching.py::plan_micro_batches", "chord/batching.py::collate"], []),
    ("learner outside forward/backward (DeepSpeed step: clip + AdamW, metrics, memory probe)",
     ["chord/learner/deepspeed_learner.py::train_step"],
     ["chord/learner/policy_step.py::forward", "torch/autograd/__init__.py::backward"]),
    ("  of which: DeepSpeed engine.step (grad clip + AdamW)", ["deepspeed/runtime/engine.py::step"], []),
    ("metric all-reduce (step_metrics.all_reduce; world size 1: none)", ["chord/step_metrics.py::all_reduce"], []),
    ("weight push: buckets + reload RPCs + prefix-cache reset", ["chord/train.py::push_weights"], []),
    ("  of which: vLLM reload (collective_rpc: begin, buckets, end; layerwise weight loader)",
     ["vllm/entrypoints/llm.py::collective_rpc"], []),
    ("  of which: oneDNN matmul handles re-created for the new weights (one per linear layer)",
     ["~::<built-in method torch._ops._C.create_onednn_mm_handler>"], []),
    ("  of which: prefix-cache reset", ["vllm/entrypoints/llm.py::reset_prefix_cache"], []),
    ("metrics.jsonl row (RunLogger.log)", ["chord/logger.py::log"], []),
]


def profile_table(path: Path, steps: int, wall_ms: float | None) -> list[str]:
    st = pstats.Stats(str(path)).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}

    def cum(key: Key) -> tuple[float, float] | None:
        part, func = key.split("::")
        hits = [(v[3], v[1]) for (file, _, name), v in st.items()
                if name == func and file.replace(os.sep, "/").endswith(part)]
        return (sum(h[0] for h in hits), sum(h[1] for h in hits)) if hits else None

    lines = ["| where | ms / step (profiled) | calls / step |", "|---|---|---|"]
    top: list[tuple[float, str]] = []  # the overheads proper: not a total, a reference or an "of which"
    step_ms = 0.0
    for i, (label, plus, minus) in enumerate(PROFILE_ROWS):
        found = [c for c in map(cum, plus) if c is not None]
        if not found:
            lines.append(f"| {label} | — | — |")
            continue
        ms = 1000 * (sum(c[0] for c in found) - sum(c[0] for c in map(cum, minus) if c is not None)) / steps
        lines.append(f"| {label} | {ms:.1f} | {found[0][1] / steps:.0f} |")
        if i == 0:
            step_ms = ms
        elif not label.startswith(("*", " ")):
            top.append((ms, label))
    if wall_ms:
        lines.append(f"| (unprofiled wall time per step, same regime, from the timed runs) | {wall_ms:.1f} | |")
    ranked = [f"{k}. {label}: {ms:.1f} ms ({100 * ms / step_ms:.0f}% of the profiled step)"
              for k, (ms, label) in enumerate(sorted(top, reverse=True)[:8], 1) if step_ms]
    lines = ["Largest per-step costs outside the model's forward/backward and the engine's forward, profiled ms per "
             "step (Python-heavy rows, as all of these are, are inflated by cProfile more than the torch kernels: "
             "read them as upper bounds):", "",
             *ranked, "", *lines]
    own = sorted(((tt, ct, n, f"{Path(file).name}:{name}") for (file, _, name), (_, n, tt, ct, _) in st.items()),
                 reverse=True)[:25]
    lines += ["", "Top 25 functions by own time (tottime):", "",
              "| function | own ms / step | cumulative ms / step | calls / step |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {1000 * tt / steps:.2f} | {1000 * ct / steps:.1f} | {n / steps:.0f} |"
              for tt, ct, n, name in own]
    return lines


# -- report -------------------------------------------------------------------------------------------------------

def version(dist: str) -> str:
    import importlib.metadata

    for name in (dist, f"{dist}-cpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if dist == "trl":
        found = sorted(TRL_DIR.glob("trl-*.dist-info"))
        return found[0].name[4:-10] + " (.bench/trl)" if found else "not installed"
    return "not installed"


def provenance(a: argparse.Namespace) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True)
    return {"date": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}", "commit": commit.stdout.strip() or "?",
            "dirty": bool(dirty.stdout.strip()), "cpu": cpu, "nproc": len(os.sched_getaffinity(0)),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "versions": {d: version(d) for d in ("torch", "vllm", "trl", "transformers", "accelerate", "deepspeed",
                                                 "datasets")},
            "command": " ".join(["python", "benchmarks/vs_trl.py", *sys.argv[1:]])}


def shown(cmd: list[str]) -> str:
    """A command as typed from the repository root: paths below it relative, the interpreter as `python`."""
    parts = ["python" if x == PY else x.replace(f"{ROOT}{os.sep}", "") for x in cmd]
    return " ".join(parts)


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


COLUMNS = [
    "- wall s/step: time between consecutive optimizer-step ends (chord: after `learn()`, i.e. after the weight push; "
    "TRL: `on_step_end`), rank 0; everything a step costs, its logging included.",
    "- CPU s: user + system CPU seconds of the process tree per step (vLLM's engine process at 2 ranks included), "
    "summed over ranks; on 2 cores the most a step can use is 2 x its wall time.",
    "- gen s: chord `time/generate` (the vLLM call and its conversion to rollouts); TRL `_generate_single_turn` "
    "(HF `generate` and its EOS masking).",
    "- learner s: chord `time/learner` (micro-batches: forward, backward; clip and AdamW step); TRL `training_step` "
    "calls minus `_generate_and_score_completions`, plus `_clip_grad_norm` and the optimizer step.",
    "- chord sync s: `time/weight_sync` (the weight push into vLLM and its prefix-cache reset; HF generate in TRL "
    "uses the training model itself, so TRL has none).",
    "- tok/s: response tokens trained per second of wall time (chord `tokens/rollout`; TRL "
    "`completions/mean_length` x B x K).",
    "- of it vLLM engine process (runs table, chord at 2 ranks): the CPU seconds per step of rank 0's child "
    "process, the engine; more than its generation time means it keeps cores busy while the learner ranks run.",
]
UNEQUAL = [
    "- The sampled tokens: vLLM and HF `generate` draw from the same distribution with different random streams, so "
    "in the short regime each side's response lengths (and work) follow its own samples and its own policy's "
    "progress; the table shows both mean lengths. The long regime fixes the lengths.",
    "- The long regime's distribution: chord (`rollout.ignore_eos`) may sample EOS and runs on past it; TRL's HF "
    "path cuts a completion at its first EOS, so EOS is suppressed instead (`min_new_tokens`). Same token counts, "
    "slightly different samples: its reward curves are not comparable, its times are.",
    "- At 2 ranks chord's default placement on CPU (rollout.placement=auto -> rank0) puts one vLLM engine in its "
    "own process on rank 0 that generates all B x K; each TRL rank generates its half with HF `generate`. The "
    "engine process and both learner ranks share the 2 cores. torchrun sets OMP_NUM_THREADS=1 on both sides.",
    "- Numerics that do not change the work: TRL's advantage epsilon is 1e-4 (chord 1e-6); TRL computes the "
    "token entropy and its clip statistics every micro-batch, chord its log-prob gap check and its own metrics.",
    "- Each side's own per-step bookkeeping is counted: TRL tokenizes the prompts every step (chord once at "
    "start-up), TRL's Trainer logs a dict per step, chord writes a metrics.jsonl row.",
    "- Start-up (launch to the first step) is not in the per-step numbers; it is in the runs table.",
]


def write_report(a: argparse.Namespace, runs: list[dict[str, Any]], table: list[dict[str, Any]],
                 prov: dict[str, Any], load: tuple, profile: list[str] | None) -> Path:
    stem = f"vs_trl_cpu{'_smoke' if a.quick else ''}_{datetime.now(UTC):%Y-%m-%d}"
    a.out.mkdir(parents=True, exist_ok=True)
    js = {"provenance": prov, "load_average": {"before": load[0], "after": load[1]}, "steps": a.steps,
          "first_measured_step": FIRST_MEASURED, "summary": table,
          "runs": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items() if k not in ("env",)}
                   for r in runs]}
    (a.out / f"{stem}.json").write_text(json.dumps(js, indent=1))
    title = "SMOKE RUN (--quick): not a measurement" if a.quick else "measurement"
    md = [f"# chord vs TRL {prov['versions']['trl'].split()[0]} GRPOTrainer on CPU — {title}", "",
          f"Medians of steps {FIRST_MEASURED}-{a.steps} of each run, then the median over runs "
          f"(seeds {a.seed_list}); runs interleaved chord, TRL, chord, TRL. Ratio = TRL time / chord time "
          "(> 1: chord faster). Made by `benchmarks/vs_trl.py` (its docstring: what is held equal).", "",
          "| ranks | regime | chord wall s/step | TRL wall s/step | **TRL / chord** | chord CPU s | TRL CPU s | "
          "chord gen s | TRL gen s | chord learner s | TRL learner s | chord sync s | chord tok/s | TRL tok/s | "
          "resp len chord / TRL |", "|" + "---|" * 15]
    for row in table:
        c, t, q = row["chord"], row["trl"], row["ratio_trl_over_chord"]
        md.append(f"| {row['ranks']} | {row['regime']} | {fmt(c['wall_s'])} | {fmt(t['wall_s'])} | "
                  f"**{fmt(q['wall_s'], '.2f')}x** | {fmt(c['cpu_s'])} | {fmt(t['cpu_s'])} | {fmt(c['generate_s'])} | "
                  f"{fmt(t['generate_s'])} | {fmt(c['learner_s'])} | {fmt(t['learner_s'])} | "
                  f"{fmt(c['weight_sync_s'])} | {fmt(c['tokens_per_s'], '.0f')} | {fmt(t['tokens_per_s'], '.0f')} | "
                  f"{fmt(c['response_len'], '.1f')} / {fmt(t['response_len'], '.1f')} |")
    ratios = "; ".join(f"{r['ranks']}r {r['regime']}: " + ", ".join(
        f"{k} {fmt(v, '.2f')}" for k, v in r["ratio_trl_over_chord"].items()) for r in table)
    md += ["", f"Per-stat ratios TRL / chord: {ratios}", "", "## Runs", "",
           "| run | exit | start-up s | steps | wall s/step | CPU s/step | of it vLLM engine process | reward first → "
           "last | load avg before → after |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, rows = r.get("median") or {}, r.get("rows") or []
        rw = [x["reward"] for x in rows if x.get("reward") is not None]
        md.append(f"| {r['ranks']}r {r['regime']} {r['side']} seed {r['seed']} | {r['code']} | "
                  f"{fmt(r.get('startup_s'), '.0f')} | {len(rows)} | {fmt(m.get('wall_s'))} | {fmt(m.get('cpu_s'))} | "
                  f"{fmt(m.get('cpu_engine_process_s')) if r['ranks'] > 1 and r['side'] == 'chord' else ''} | "
                  f"{fmt(rw[0] if rw else None, '.2f')} → {fmt(rw[-1] if rw else None, '.2f')} | "
                  f"{r['load_before'][0]:.2f} → {r['load_after'][0]:.2f} |")
    failed = [r for r in runs if r["code"]]
    for r in failed:
        md += ["", f"### {r['ranks']}r {r['regime']} {r['side']} seed {r['seed']} failed (exit {r['code']})", "",
               "```", *r["log_tail"], "```"]
    md += ["", "## What the columns are", "", *COLUMNS, "", "## What is not the same on both sides", "", *UNEQUAL]
    md += ["", "## Provenance", "", f"- date {prov['date']}, commit {prov['commit']}"
           f"{' (uncommitted changes in tracked files)' if prov['dirty'] else ''}",
           f"- CPU: {prov['cpu']}; nproc {prov['nproc']} (os.cpu_count {prov['cpu_count']}); {prov['platform']}; "
           f"Python {prov['python']}",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
           f"- load average (1/5/15 min) before {load[0]}, after {load[1]}",
           f"- command: `{prov['command']}`", "- run commands (cwd: the repository root):", ""]
    md += [f"  - `{'PYTHONPATH=.bench/trl:. ' if r['side'] == 'trl' else ''}{shown(r['cmd'])}`" for r in runs]
    if profile:
        md += ["", "## Profile", "", *profile]
    path = a.out / f"{stem}.md"
    path.write_text("\n".join(md) + "\n")
    return path


# -- main ---------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 20; --quick 6)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 2; --quick 1)")
    p.add_argument("--ranks", default=None, help="comma list of rank counts (default 1,2; --quick 1)")
    p.add_argument("--regimes", default="short,long", help="short,long (default both)")
    p.add_argument("--sides", default="chord,trl", help="which sides run (debugging one side: chord or trl)")
    p.add_argument("--long-tokens", type=int, default=96, help="response length of the long regime")
    p.add_argument("--quick", action="store_true", help="smoke: 6 steps, 1 seed, 1 rank, both regimes")
    p.add_argument("--profile-steps", type=int, default=0,
                   help="also profile N chord steps (short regime, 1 rank, cProfile around the training loop)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it is stopped")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default .bench/runs/<UTC time>)")
    a = p.parse_args(argv)
    a.steps = a.steps or (6 if a.quick else 20)
    a.seed_list = list(range(a.seeds or (1 if a.quick else 2)))
    a.rank_list = [int(x) for x in (a.ranks or ("1" if a.quick else "1,2")).split(",")]
    a.regime_list = [x for x in a.regimes.split(",") if x]
    a.side_list = [x for x in a.sides.split(",") if x]
    a.runs = a.runs or ROOT / ".bench" / "runs" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    a.profile_file = None
    return a


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_chord"]:
        return chord_worker(argv[1:])
    if argv[:1] == ["_trl"]:
        return trl_worker(argv[1])
    a = parse_args(argv)
    if "trl" in a.side_list and not (TRL_DIR / "trl").is_dir():
        raise SystemExit(f"vs_trl: TRL is not in {TRL_DIR}: .venv/bin/pip install --target .bench/trl --no-deps "
                         "trl==1.16.0")
    from chord.config import load_config

    rows_per_step = (lambda t: t.prompts_per_step * t.samples_per_prompt)(load_config(ROOT / RECIPE, []).trainer)
    load0 = os.getloadavg()
    plans = [plan_run(side, regime, ranks, seed, a) for ranks in a.rank_list for regime in a.regime_list
             for seed in a.seed_list for side in a.side_list]  # chord, TRL, chord, TRL: interleaved
    runs = []
    for r in plans:
        r["rows_per_step"] = rows_per_step
        execute(r, a.timeout)
        r["rows"] = step_rows(r) if r["code"] == 0 else []
        r["median"] = medians(r["rows"], min(FIRST_MEASURED, a.steps)) if r["rows"] else None
        runs.append(r)
    profile = None
    if a.profile_steps:
        a.profile_file = a.runs / "chord_profile.pstats"
        a_prof = argparse.Namespace(**{**vars(a), "steps": FIRST_MEASURED - 1 + a.profile_steps,
                                       "runs": a.runs / "profile"})
        r = execute(plan_run("chord", "short", 1, 0, a_prof), a.timeout)
        short = [x for x in runs if x["side"] == "chord" and x["regime"] == "short" and x["ranks"] == 1 and x["median"]]
        wall = 1000 * statistics.median([x["median"]["wall_s"] for x in short]) if short else None
        profile = profile_intro(a.profile_steps, r) + profile_table(a.profile_file, a.profile_steps, wall) \
            if r["code"] == 0 else [f"profile run failed (exit {r['code']}); see {r['dir'] / 'run.log'}"]
    table = summarize(runs, FIRST_MEASURED)
    path = write_report(a, runs, table, provenance(a), (load0, os.getloadavg()), profile)
    print(f"vs_trl: {len(runs)} runs -> {path} and {path.with_suffix('.json')}")
    return 0 if all(r["code"] == 0 for r in runs) else 1


def profile_intro(steps: int, r: dict[str, Any]) -> list[str]:
    return [f"A smoke-time cProfile of chord's training loop (`--profile-steps {steps}`: recipes/tiny_grpo.yaml, "
            f"short regime, 1 rank, vLLM in-process), steps {FIRST_MEASURED}-{FIRST_MEASURED - 1 + steps}: start-up "
            f"and the first {FIRST_MEASURED - 1} steps (imports, torch.compile of vLLM's sampler ops, cache warm-up) "
            f"are left out. Load average {r['load_before'][0]:.2f} → {r['load_after'][0]:.2f}. cProfile adds a cost "
            "to every Python call, so Python-heavy paths (vLLM's scheduler and output processing) read larger than "
            "they run: compare the step row with the unprofiled wall time in the last row. A row includes the rows "
            "indented under it; rows are matched by file and function name. Command: "
            f"`{shown(r['cmd'])}`.", ""]


if __name__ == "__main__":
    raise SystemExit(main())
