"""chord trainer: one on-policy GRPO run with SFT on expert data as an auxiliary loss (CHORD).

    python chord/train.py recipes/tiny.yaml [dotted.key=value ...]         # one process
    deepspeed --num_gpus 2 chord/train.py recipes/tiny.yaml                 # 2 ranks
    torchrun --nproc_per_node 2 chord/train.py recipes/tiny.yaml
    python chord/train.py recipes/tiny.yaml --print-config
    python chord/train.py --help [KEY]                                      # every recipe key, or one

One step: generate B x K rollouts with the engine(s) -> score -> group advantages -> an expert batch ->
micro-batches by tokens (loss with the step's global token counts as denominators, backward) ->
optimizer step -> push the new weights into vLLM -> log -> checkpoint. Where chord departs from the
paper and from the authors' implementation (old log-probs from the engine, mu 1-indexed, ...):
docs/algorithm.md#departures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # launched as a script path: make `import chord` find this checkout
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

# c10 reads its C++ log level once, when torch is imported: its warnings (vLLM CPU's "NUMA binding" line) stay off a
# run's terminal; set TORCH_CPP_LOG_LEVEL=WARNING to see them (chord.logger.quiet_third_party does the rest)
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

import psutil  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm

# None of these imports vLLM, DeepSpeed, Triton or transformers (tests/unit/test_imports.py): they load when
# build_run builds the engine and the learner, after main() has chosen TRITON_INTERPRET.
from chord import checkpoint, faults
from chord.algo.advantage import group_advantages, informative_groups
from chord.algo.mu_schedule import mu_at
from chord.analysis.curves import summary, write_curves
from chord.batching import aggregation_scales, collate, count_tokens, expert_row, plan_micro_batches, rollout_row
from chord.build import Run, build_run, set_numerics
from chord.checkpoint.disk import failure_message, remove_partial, space_warning
from chord.checkpoint.hub import publish_run, push_warning
from chord.checkpoint.lock import RunFolderGone, RunLock, lock_run_folder
from chord.config import (
    ChordConfig,
    ConfigError,
    describe_all,
    describe_key,
    evaluates,
    load_config,
    needs_engine,
    rows_per_step,
    stages,
    to_yaml,
    uses_rl,
)
from chord.config.versions import check_versions, packages_for
from chord.data.loading import DataError
from chord.distributed import Dist, broadcast, init_distributed, shm, shutdown
from chord.distributed.exchange import all_gather_rollouts, gather_floats, shard
from chord.evaluation import evaluate, new_best, sampling_for, write_results
from chord.evaluation.exploration import all_equal_fraction, mean_distinct_n
from chord.learner.guarded_adamw import NonFiniteError
from chord.logger import RunLogger, quiet_third_party, say, set_aside_old_logs, timed, write_rollouts
from chord.models.load import ModelError
from chord.rewards import RewardError, is_correct, score_all
from chord.rewards.overlong import apply_overlong_penalty
from chord.rollout.placement import engine_group, placement, sleeps
from chord.step_metrics import all_reduce, drop_absent, to_floats
from chord.trackers import open_trackers

NO_WEIGHTS = -1  # run.state.engine_step of a sleeping engine: it holds no weights until the next push


class StaleWeightsError(RuntimeError):
    """The learner and the rollout engine disagree on log-probs: the engine's weights are stale."""


def collect_rollouts(run: Run, step: int, times: dict[str, float]) -> tuple[list, dict[str, float]]:
    """Each engine generates and scores its share of the step's B prompt groups (all of them with one
    engine on rank 0); every rank then holds all scored rollouts, exchanged as tensors."""
    t = run.cfg.trainer
    if run.prompts is None:
        return [], {}
    prompts = run.prompts.next_batch(t.prompts_per_step)  # every rank advances its stream copy
    group, engines, reports = engine_group(run.cfg, run.dist)
    local: list = []
    errors = 0
    if run.state.engine_step != step - 1:  # asleep, or a resumed run: the weights of the last step first
        with timed(times, "weight_sync"):
            push_weights(run, step - 1)
    if run.engine is not None:
        slots = shard(len(prompts), engines, group)
        with timed(times, "generate"):
            # more engines than prompt groups leaves some with none: no engine call
            local = run.engine.generate([prompts[i] for i in slots], t.samples_per_prompt, step,
                                        slots=slots) if slots else []
        with timed(times, "reward"):
            scores = score_all(run.reward_fn, [r.response_text for r in local],
                               [prompts[r.group].answer for r in local], [r.truncated for r in local],
                               [prompts[r.group].extra for r in local])
        for r, s, info in zip(local, scores.rewards, scores.info, strict=True):
            r.reward, r.reward_info = s, info
        rw = run.cfg.reward
        apply_overlong_penalty(local, run.cfg.rollout.max_new_tokens, rw.overlong_buffer, rw.overlong_buffer_penalty)
        errors = scores.errors
    sleep_engine(run)  # the learner gets the memory back until the next push
    with timed(times, "exchange"):
        rollouts = all_gather_rollouts(local if reports else [])
        gen = gather_floats([times.get("time/generate", 0.0), float(errors)] if reports else [])
    gen_s, errs = gen[0::2], gen[1::2]
    m = reward_metrics(rollouts, int(sum(errs)))
    m.update(run.prompts.batch_metrics())  # a mixture's share of each source (data/prompts/<source>_frac)
    # straggler visibility: the slowest engine sets the step's pace
    m.update({"time/generate_max_rank": max(gen_s), "time/generate_mean_rank": sum(gen_s) / len(gen_s),
              "throughput/rollout_tokens_per_s": sum(len(r.response_ids) for r in rollouts) / max(max(gen_s), 1e-9)})
    if run.cfg.logging.save_rollouts and run.dist.is_main:
        write_rollouts(run.out_dir, step, rollouts)
        run.logger.log_rollouts(step, rollouts)  # a table in wandb / mlflow (logging.trackers)
    return rollouts, m


def reward_metrics(rollouts: list, errors: int) -> dict[str, float]:
    rew = torch.tensor([r.reward for r in rollouts])
    lens = torch.tensor([len(r.response_ids) for r in rollouts], dtype=torch.float32)
    m = {"reward/mean": rew.mean().item(), "reward/std": rew.std().item() if len(rew) > 1 else 0.0,
         "reward/accuracy": sum(is_correct(r.reward, r.reward_info) for r in rollouts) / len(rollouts),
         "reward/errors": float(errors),
         "response/length_mean": lens.mean().item(), "response/length_max": lens.max().item(),
         "response/truncated_frac": sum(r.truncated for r in rollouts) / len(rollouts)}
    for key in sorted({k for r in rollouts for k in r.reward_info}):
        m[f"reward/{key}"] = sum(r.reward_info.get(key, 0.0) for r in rollouts) / len(rollouts)
    groups: dict[int, list] = {}  # a prompt group's K samples: the rollouts sharing one `group`
    for r in rollouts:
        groups.setdefault(r.group, []).append(r)
    if min(map(len, groups.values())) >= 2:  # K = 1 compares nothing (and its advantage is R / (1 + eps))
        # all rewards equal: every advantage is 0, the group gives no GRPO signal
        m["rollout/all_equal_frac"] = all_equal_fraction([[r.reward for r in g] for g in groups.values()])
    m["rollout/distinct_2"] = mean_distinct_n([[r.response_ids for r in g] for g in groups.values()], 2)
    return m


def check_gap(cfg: ChordConfig, m: dict[str, float], step: int) -> None:
    """fp32 + plain sampling: learner and vLLM log-probs must agree; otherwise weights are stale."""
    exact = cfg.model.dtype == "float32" and not cfg.deepspeed.bf16 and cfg.rollout.top_p == 1.0
    gap = m.get("gap/logp_max")
    if exact and gap is not None and gap > cfg.trainer.max_logprob_gap:
        raise StaleWeightsError(
            f"step {step}: learner vs rollout log-prob gap {gap:.3g} > trainer.max_logprob_gap "
            f"{cfg.trainer.max_logprob_gap:g}: the rollout engine is not sampling from the learner's weights")


def check_nonfinite(run: Run, step: int) -> None:
    """A NaN/Inf loss or gradient skipped the optimizer step; too many in a row end the run."""
    streak, limit = run.state.nonfinite_streak, run.cfg.trainer.max_nonfinite_steps
    if streak:
        say(f"step {step}: non-finite loss or gradient norm, optimizer step skipped ({streak} in a row)")
    if streak >= limit:
        raise NonFiniteError(f"{streak} non-finite steps in a row (trainer.max_nonfinite_steps={limit}); the last "
                             f"checkpoint in {run.out_dir / 'checkpoints'} holds the last good weights")


def train(run: Run, stop: checkpoint.StopFlag, lock: RunLock | None) -> tuple[dict[str, float], bool]:
    """Train from run.state.step; (last step's metrics, whether trainer.steps were reached). `stop`: a SIGTERM
    or SIGINT asks for a checkpoint and a clean exit; `lock` (rank 0's): is the run folder still there."""
    cfg, t, d = run.cfg, run.cfg.trainer, run.dist
    start = run.state.step
    n_roll, n_exp = rows_per_step(cfg)
    if start == 0 and d.is_main:
        set_aside_old_logs(run.out_dir)
    run.logger = RunLogger(run.out_dir, enabled=d.is_main,
                           trackers=open_trackers(cfg, run.out_dir, start) if d.is_main else [],  # resume: same runs
                           before_write=partial(faults.fs_fault, "metrics"))  # inert unless a test injects
    sleep_engine(run)  # nothing generates until the first rollout or evaluation pushes weights
    if d.is_main and (t.save_every or t.save_at_end) and (
            warning := space_warning(run.out_dir, run.learner.n_parameters, t.keep_last)):
        say(warning)
    if cfg.eval.at_start and evaluates(cfg) and start == 0:
        run.logger.log(0, run_eval(run, 0))  # the starting point of every curve
    if broadcast(stop.requested):  # a signal during start-up or the first evaluation: nothing new to save
        say(f"stopped before step {start + 1}; nothing to checkpoint. Resume with the same command.")
        return {}, False
    if d.is_main:  # the start-up cost a user waits through (docs/usage.md#start-up-time)
        say(f"step {start + 1} of {t.steps} starts {time.time() - psutil.Process().create_time():.0f} s after launch")
    bar = tqdm(range(start + 1, t.steps + 1), desc=cfg.run.name, initial=start, total=t.steps,
               disable=not (d.is_main and cfg.logging.progress_bar), dynamic_ncols=True)
    m: dict[str, float] = {}
    saved_times: dict[str, float] = {}  # the last save's duration, logged with the next step
    step = start
    for step in bar:
        faults.signal_self("KILL_AT_STEP", step, d.is_main)  # preemption (tests only)
        faults.signal_self("TERM_AT_STEP", step, d.is_main)  # polite stop (tests only)
        times: dict[str, float] = {}
        with timed(times, "step"):
            mu = faults.nan_mu(mu_at(step, **asdict(cfg.algorithm.mu)), step)  # NaN only when injected (tests)
            rollouts, rmetrics = collect_rollouts(run, step, times)
            rollouts, rewards = kept_groups(cfg, rollouts, rmetrics)
            alg = cfg.algorithm
            adv = group_advantages(rewards, alg.advantage_eps, alg.scale_rewards).flatten().tolist() if rollouts else []
            experts = run.experts.next_batch(n_exp) if run.experts is not None else []
            rows = [rollout_row(r, a) for r, a in zip(rollouts, adv)] + [expert_row(e) for e in experts]
            aggregation_scales(rows, alg.loss_agg_mode, alg.sft_loss_agg_mode or alg.loss_agg_mode)
            n_rollout_tok, n_expert_tok = count_tokens(rows)  # global denominators of both token means
            m = {**learn(run, step, rows, (n_rollout_tok, n_expert_tok), mu, times), **rmetrics, "mu": mu}
        if eval_due(cfg, step):
            with timed(times, "eval"):
                m.update(run_eval(run, step))
        # every rank must agree to save and stop; a run folder deleted or moved under the run stops it
        stopping, gone = broadcast((stop.requested, lock.gone_message() if lock is not None and lock.gone() else None))
        if gone:
            raise RunFolderGone(gone)
        tokens = n_rollout_tok + n_expert_tok
        m.update(times, **saved_times, **{"throughput/tokens_per_s": tokens / times["time/step"],
                                          "tokens/rollout": n_rollout_tok, "tokens/expert": n_expert_tok})
        # The row is written before the checkpoint: a kill during or after the save then never loses it (a
        # resume from this checkpoint keeps rows <= its step, one from an older one drops and re-runs them).
        # So a save's duration is logged in the next row, as time/checkpoint_prev.
        run.logger.log(step, m)
        saved_times = {}
        if stopping or (t.save_every and step % t.save_every == 0) or (step == t.steps and t.save_at_end):
            saved_times = timed_save(run, step)
        bar.set_postfix(reward=f"{m.get('reward/mean', float('nan')):.3f}", mu=f"{mu:.3f}",
                        step_s=f"{times['time/step']:.2f}")
        if stopping:
            say(f"stopped after step {step}; checkpoint saved. Resume with the same command (trainer.resume=auto).")
            return m, False
    if step == t.steps and t.save_at_end:
        export_model(run, "final")
    return m, step == t.steps


def kept_groups(cfg: ChordConfig, rollouts: list, metrics: dict[str, float]) -> tuple[list, torch.Tensor]:
    """The step's rollouts and their [groups, K] rewards; with algorithm.filter_groups only the groups whose rewards
    differ (DAPO's dynamic sampling without refill: docs/algorithm.md#group-filtering), counted in `metrics`."""
    k = cfg.trainer.samples_per_prompt
    rewards = torch.tensor([r.reward for r in rollouts]).view(-1, k)  # rollouts come grouped, K per prompt
    if not cfg.algorithm.filter_groups or not rollouts:
        return rollouts, rewards
    keep = informative_groups(rewards)
    metrics["rollout/groups_kept"] = float(keep.sum())
    return [r for i, r in enumerate(rollouts) if keep[i // k]], rewards[keep]


def learn(run: Run, step: int, rows: list, tokens: tuple[int, int], mu: float,
          times: dict[str, float]) -> dict[str, float]:
    """The step's rows -> micro-batches -> one optimizer step -> the new weights into the engine; its metrics.
    No rows (every group filtered, no expert rows) is no update at all: Adam's moments, weight decay and the lr
    schedule stay as they are, as for a skipped non-finite step (docs/algorithm.md#group-filtering)."""
    cfg, t, d = run.cfg, run.cfg.trainer, run.dist
    m: dict[str, float] = {"optim/empty_step": float(not rows)} if cfg.algorithm.filter_groups else {}
    if rows:
        n_rollout_tok, n_expert_tok = tokens  # the step's global token counts (count_tokens)
        micro = [collate(b, run.pad_id, run.packed) for b in plan_micro_batches(
            rows, d.world, max_tokens=t.max_tokens_per_micro_batch, rows_per_micro=t.micro_batch_size,
            packed=run.packed)[d.rank]]
        with timed(times, "learner"):
            lm = run.learner.train_step(micro, mu, n_rollout_tok, n_expert_tok)
        m.update(drop_absent(to_floats(all_reduce(lm)), n_rollout_tok, n_expert_tok))
        check_gap(cfg, m, step)
        run.state.nonfinite_streak = run.state.nonfinite_streak + 1 if m["optim/skipped"] else 0
        check_nonfinite(run, step)
    if uses_rl(cfg) and rows and not m["optim/skipped"]:
        with timed(times, "weight_sync"):
            push_weights(run, step)
    elif uses_rl(cfg) and run.state.engine_step == step - 1:
        run.state.engine_step = step  # a skipped or empty step left the weights as the engine holds them
    return m


def timed_save(run: Run, step: int) -> dict[str, float]:
    times: dict[str, float] = {}
    with timed(times, "checkpoint"):
        checkpoint.save(run, step)
    faults.signal_self("KILL_AFTER_SAVE", step, run.dist.is_main)  # tests only
    return {"time/checkpoint_prev": times["time/checkpoint"]}


def push_weights(run: Run, step: int) -> None:
    """Every rank iterates the weight buckets (ZeRO-3 gathers collectively); ranks with an engine load
    them into it bucket by bucket (rank 0's engine, or every rank's with per_rank)."""
    if not needs_engine(run.cfg):
        return
    buckets = run.learner.weight_buckets(int(run.cfg.rollout.weight_bucket_mb * 2**20))
    if run.engine is not None:
        run.engine.push_weights(buckets, version=step)
    else:
        for _ in buckets:
            pass
    run.state.engine_step = step


def sleep_engine(run: Run) -> None:
    """Sleep mode (CUDA): the engine releases its weights and KV cache for the learner; every rank records
    that it holds no weights, so the next rollout or evaluation pushes them first (and wakes it)."""
    if not sleeps(run.cfg, run.dist.world) or run.state.engine_step == NO_WEIGHTS:
        return
    if run.engine is not None:
        run.engine.sleep()
    run.state.engine_step = NO_WEIGHTS


def eval_due(cfg: ChordConfig, step: int) -> bool:
    e = cfg.eval
    return bool(e.benchmarks) and ((e.every > 0 and step % e.every == 0) or step in e.at_steps
                                   or (e.at_end and step == cfg.trainer.steps))


def run_eval(run: Run, step: int) -> dict[str, float]:
    """Collective: the engine(s) evaluate the current weights (per_rank: each its share of the problems);
    a better eval.best_metric re-exports best/."""
    e = run.cfg.eval
    faults.signal_self("TERM_IN_EVAL", step, run.dist.is_main)  # tests only
    if run.state.engine_step != step:  # SFT runs push weights only for evaluation; a sleeping engine needs them
        push_weights(run, step)
    result = None
    sharded = placement(run.cfg, run.dist.world) == "per_rank"
    if sharded or run.dist.is_main:
        result, samples = evaluate(run.engine, run.benchmarks, run.reward_fn, step=step,
                                   sampling=sampling_for(e, run.cfg.rollout.max_new_tokens),
                                   engine_slot=engine_group(run.cfg, run.dist) if sharded else None,
                                   keep_samples=e.save_samples)
        if run.dist.is_main:
            write_results(run.out_dir, step, result, samples if e.save_samples else None)
    sleep_engine(run)  # an SFT run's engine too: it holds no memory between evaluations
    metrics: dict[str, float] = result if sharded else broadcast(result)
    value = metrics[e.best_metric]
    if new_best(step, value, run.state.best["value"] if run.state.best else None, e.best_mode, e.best_includes_start):
        run.state.best = {"metric": e.best_metric, "value": value, "step": step}
        export_best(run)
    return {f"eval/{k}": v for k, v in metrics.items()}


def export_best(run: Run) -> None:
    export_model(run, "best", {"chord_best.json": json.dumps(run.state.best)})


def export_model(run: Run, name: str, extra: dict[str, str] | None = None) -> None:
    """Collective: save_pretrained into out_dir/<name> (final/, best/) by rename, so a kill or a full disk
    never leaves a half-written folder (a failed export removes its temporary one)."""
    final, tmp, old = run.out_dir / name, run.out_dir / f".{name}.tmp", run.out_dir / f".{name}.old"
    if run.dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        run.learner.export(tmp, run.tokenizer)
        faults.signal_self("TERM_IN_EXPORT", name, run.dist.is_main)  # tests only
        if run.dist.is_main:
            faults.fs_fault("export", name, tmp / "model.safetensors")  # tests only
            for file, text in (extra or {}).items():
                (tmp / file).write_text(text)
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if run.dist.is_main:
            remove_partial(tmp)
        raise


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, int | None]:
    """The command line; (args, exit status) when it asked for help, which is then printed here: `--help`
    lists every recipe key (chord.config.describe), `--help KEY` / `--describe KEY` one key or section."""
    p = argparse.ArgumentParser(prog="python chord/train.py", description="CHORD trainer", add_help=False,
                                usage="%(prog)s RECIPE [dotted.key=value ...]")
    p.add_argument("recipe", nargs="?", help="a YAML recipe (recipes/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value, applied over the recipe")
    p.add_argument("-h", "--help", nargs="?", const="", dest="describe", metavar="KEY",
                   help="this help with every recipe key, or one key or section (e.g. --help trainer.lr)")
    p.add_argument("--describe", metavar="KEY", help="a recipe key or section: its type, default and documentation")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by `deepspeed`
    args = p.parse_intermixed_args(argv)
    if args.describe is not None and args.describe.endswith((".yaml", ".yml")):  # --help RECIPE: not a key
        args.describe = ""
    if args.describe is None:
        if args.recipe is None:
            p.error("the following arguments are required: RECIPE")
        return args, None
    try:
        keys = "\nrecipe keys and their defaults (chord/config/schema.py); override any with dotted.key=value:\n\n"
        print(describe_key(args.describe) if args.describe else p.format_help() + keys + describe_all(), end="")
    except ConfigError as e:
        say(f"config error: {e}", main_only=False)
        return args, 2
    return args, 0


def main(argv: list[str] | None = None) -> int:
    args, answered = parse_args(argv)
    if answered is not None:  # --help / --describe
        return answered
    try:
        cfg = load_config(args.recipe, args.overrides)
    except ConfigError as e:
        say(f"config error: {e}", main_only=False)
        return 2
    if args.print_config:
        for st in stages.expand(cfg) if cfg.stages else []:
            print(f"# ---- {st.label}: resolved config\n{to_yaml(st.cfg)}", end="")
        print(to_yaml(cfg) if not cfg.stages else "", end="")
        return 0
    try:
        if warning := check_versions(packages_for(cfg), cfg.run.allow_untested_versions):
            say(warning)
    except ConfigError as e:
        say(f"config error: {e}", main_only=False)
        return 2
    quiet_third_party(cfg.logging.verbose)  # before vLLM, DeepSpeed and Triton are imported
    if os.environ.get("RANK", "0") == "0" and (warning := push_warning(cfg)):
        say(warning)  # before hours of training, not after
    set_numerics(cfg)
    stop = checkpoint.StopFlag()  # before anything is built: a signal during start-up is kept too
    d = init_distributed(timedelta(minutes=cfg.run.dist_timeout_minutes))
    try:
        if not cfg.stages:
            return run_stage(cfg, d, stop)[0]
        plan = stages.expand(cfg)
        for st in plan:
            if cfg.trainer.resume == "auto" and stages.is_done(st):
                say(f"{st.label} already finished ({st.dir}); skipping")
                continue
            say(f"{st.label} of {len(plan)}: model {st.cfg.model.path}, outputs in {st.dir}")
            code, final = run_stage(st.cfg, d, stop)
            if code or final is None:  # failed, or stopped by a signal: the next launch resumes this stage
                return code
            if d.is_main:
                stages.mark_done(st, final)
            faults.signal_self("TERM_AT_STAGE_SWITCH", plan.index(st) + 1, d.is_main)  # tests only
            if broadcast(stop.requested) and st is not plan[-1]:
                say(f"stopped after {st.label}; the same command starts the next stage")
                return 0
        if d.is_main:  # the whole staged run, one timeline
            show_results(Path(cfg.run.output_dir), "tensorboard" in cfg.logging.trackers)
        return 0
    finally:
        shutdown()


def stop_for_disk(e: Exception, cfg: ChordConfig, lock: RunLock | None) -> tuple[int, None]:
    """A filesystem that refused a write (full, quota, read-only, I/O) or a run folder that went away stops
    the stage with one line and exit 1; any other exception propagates unchanged."""
    out = Path(cfg.run.output_dir)
    msg = failure_message(e, out, checkpoint.last_complete(out / "checkpoints"))
    if lock is not None and lock.gone():  # a write failed because the folder was deleted or moved
        msg = lock.gone_message()
    if msg is None:
        raise e
    say(msg, main_only=False)
    return 1, None


def run_stage(cfg: ChordConfig, d: Dist, stop: checkpoint.StopFlag) -> tuple[int, dict[str, float] | None]:
    """Build, resume and train one stage; (exit status, final metrics or None if it did not finish)."""
    run, lock = None, None
    try:
        lock = lock_run_folder(cfg.run.output_dir, d)  # one trainer per run folder, refused before anything else
        path = checkpoint.preflight(cfg, d)  # a refused resume changes nothing (config.yaml) and costs no build
        run = build_run(cfg, d)
        shm.watch_buffers(d.is_main)  # DeepSpeed's all-reduce buffers exist now; removed after a kill
        if path is not None:
            checkpoint.load(run, path)  # run.state: the step it ended, the non-finite streak, best/
    except (ConfigError, DataError, ModelError, RewardError) as e:
        say(f"{type(e).__name__}: {e}", main_only=False)
        if run is not None:
            run.close()
        if lock is not None:
            lock.release(untouched=run is None)  # refused before the build wrote anything: no folder left behind
        return 2, None
    except Exception as e:  # a full disk or a failing filesystem while building: one line, not a traceback
        if run is not None:
            run.close()
        try:
            return stop_for_disk(e, cfg, lock)  # while the lock is held: it tells whether the folder went away
        finally:
            if lock is not None:
                lock.release()
    try:
        final, finished = train(run, stop, lock)
    except (StaleWeightsError, NonFiniteError, RunFolderGone) as e:
        say(f"stopped: {e}", main_only=False)
        return 1, None
    except Exception as e:
        return stop_for_disk(e, cfg, lock)
    finally:
        run.close()
        if lock is not None:
            lock.release()
    if not finished:
        return 0, None
    say(f"done, {cfg.trainer.steps} steps; final reward {final.get('reward/mean', float('nan')):.3f}; "
           f"outputs in {run.out_dir}")
    if d.is_main:
        show_results(run.out_dir, "tensorboard" in cfg.logging.trackers)
        publish_run(cfg, run.out_dir)  # README.md cards into final/ and best/; hub.push's export to the Hub
    return 0, final


def show_results(folder: Path, tensorboard: bool) -> None:
    """curves.png and the summary line; a plot that fails is one warning, never the end of a finished run."""
    try:
        write_curves(folder)
        say(summary(folder, tensorboard))
    except Exception as e:
        say(f"warning: no curves.png for {folder} ({type(e).__name__}: {e})")


if __name__ == "__main__":
    sys.exit(main())
