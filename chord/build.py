"""Small build_* functions that turn a validated config into the pieces of a run.

See docs/architecture.md#build-functions.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chord import faults
from chord.config import ChordConfig, evaluates, needs_engine, to_yaml, uses_expert, uses_rl
from chord.data.loading import SkipReport, build_expert_examples, build_prompt_examples, load_rows
from chord.data.mixture import Source, expert_sources, prompt_sources
from chord.data.streams import MixedStream, ShuffledStream, mixture_seed
from chord.distributed import Dist, barrier
from chord.evaluation import build_benchmarks
from chord.learner import Learner
from chord.logger import RunLogger, say
from chord.models.load import DTYPES, load_causal_lm, load_tokenizer, resolve_model_path
from chord.rewards import RewardFn, build_reward
from chord.rollout import RolloutEngine
from chord.rollout.placement import engine_mode, placement, sleeps
from chord.tasks import builtin_source
from chord.types import LoopState


@dataclass
class Run:
    cfg: ChordConfig
    dist: Dist
    out_dir: Path
    model_path: str
    tokenizer: Any
    pad_id: int
    prompts: ShuffledStream | MixedStream | None  # MixedStream: data.prompts.mixture
    experts: ShuffledStream | MixedStream | None
    reward_fn: RewardFn
    engine: RolloutEngine | None  # rank 0's, or every rank's (per_rank); None elsewhere or without rollouts
    learner: Learner
    benchmarks: list = field(default_factory=list)  # chord.evaluation.Benchmark, ranks with an engine
    logger: RunLogger | None = None  # opened by train.train (it knows the resumed step)
    state: LoopState = field(default_factory=LoopState)  # the loop's own, restored by checkpoint.load

    @property
    def packed(self) -> bool:
        """Padding-free micro-batches: with a token budget, unless trainer.packing is off."""
        t = self.cfg.trainer
        return t.max_tokens_per_micro_batch is not None and t.packing

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        if self.engine is not None:
            import torch.distributed as dist

            from chord.distributed import restore_after_engine

            was_initialized = dist.is_initialized()
            self.engine.close()
            if restore_after_engine(was_initialized, self.dist.timeout):
                self.learner.forget_process_groups()  # DeepSpeed caches groups of the destroyed one
        if callable(getattr(self.reward_fn, "close", None)):
            self.reward_fn.close()  # the math reward's verifier processes


def set_numerics(cfg: ChordConfig) -> None:
    """Settings that Triton and vLLM read when first imported: call before anything is built."""
    if cfg.loss.impl == "triton" and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton runs on CPU only through its interpreter
    if cfg.model.dtype == "float32" and not cfg.deepspeed.bf16:
        # fp32 runs hold learner and vLLM log-probs within trainer.max_logprob_gap (1e-3). On CUDA vLLM's
        # fp32 attention is Triton's, whose dots default to TF32 (a 10-bit mantissa, ~5e-4 per product):
        # both sides true fp32 (an explicit TRITON_F32_DEFAULT, e.g. tf32 to measure the gap, is kept)
        os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if cfg.rollout.batch_invariant:  # vLLM reads it at import (vllm/envs.py)
        os.environ["VLLM_BATCH_INVARIANT"] = "1"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def steps_from_epochs(cfg: ChordConfig, prompts: ShuffledStream | MixedStream | None,
                      experts: ShuffledStream | MixedStream | None) -> int:
    """trainer.epochs -> optimizer steps: passes over the prompts (RL runs) or the expert rows (pure SFT); a
    mixture's epoch is as many rows as its sources hold together (chord.data.streams.MixedStream)."""
    t = cfg.trainer
    if t.epochs is None:
        return t.steps
    stream, per_step = (prompts, t.prompts_per_step) if prompts is not None else (experts, t.expert_per_step)
    assert stream is not None
    return max(1, math.ceil(t.epochs * len(stream.items) / per_step))


def build_stream(cfg: ChordConfig, kind: str, sources: list[Source], seed: int, name: str,
                 make: Callable[[Any, Source, str], tuple[list, SkipReport]]) -> ShuffledStream | MixedStream:
    """One ShuffledStream per source, each with its own skip report line; a mixture's are drawn by weight.
    A section without a mixture is the single stream it always was (same seed, same checkpoint state)."""
    streams = []
    for i, src in enumerate(sources):
        ds = load_rows(builtin_source(cfg, src.source, kind), src.split, src.subset, src.revision)
        items, report = make(ds, src, f" [{src.label}]" if src.label else "")
        say(report.summary())
        if not src.label:
            return ShuffledStream(items, seed=seed, name=name)
        streams.append(ShuffledStream(items, seed=mixture_seed(seed, i), name=f"{name}[{src.label}]"))
    return MixedStream(streams, [s.weight for s in sources], [s.label for s in sources], name=name)


def build_data(cfg: ChordConfig, tokenizer: Any) -> tuple[ShuffledStream | MixedStream | None,
                                                          ShuffledStream | MixedStream | None]:
    prompts = experts = None
    if uses_rl(cfg):
        p = cfg.data.prompts
        prompts = build_stream(cfg, "rl", prompt_sources(p), cfg.run.seed, "prompts", lambda ds, src, tag: (
            build_prompt_examples(ds, tokenizer, **src.columns, system_prompt=p.system_prompt,
                                  max_prompt_length=p.max_prompt_length, max_bad_fraction=p.max_bad_fraction,
                                  name=f"prompt data{tag}", extra_columns=p.extra_columns, source=src.label)))
    if uses_expert(cfg):
        e = cfg.data.expert
        experts = build_stream(cfg, "expert", expert_sources(e), cfg.run.seed + 1, "expert", lambda ds, src, tag: (
            build_expert_examples(ds, tokenizer, **src.columns, system_prompt=e.system_prompt,
                                  max_length=e.max_length, truncation=e.truncation,
                                  max_bad_fraction=e.max_bad_fraction, name=f"expert data{tag}")))
    return prompts, experts


def build_engine(cfg: ChordConfig, model_path: str, d: Dist) -> RolloutEngine | None:
    """rank0: one engine on rank 0 (its own process when there are several ranks); per_rank: one in
    every rank, inside the rank's process (vLLM's external_launcher)."""
    if not needs_engine(cfg) or not (placement(cfg, d.world) == "per_rank" or d.is_main):
        return None
    per_rank, multiprocess = engine_mode(cfg, d.world)
    e, p = cfg.eval, cfg.data.prompts
    max_len = max(p.max_prompt_length + cfg.rollout.max_new_tokens,
                  (e.max_prompt_length or p.max_prompt_length) + (e.max_new_tokens or cfg.rollout.max_new_tokens))
    if cfg.rollout.backend == "hf":
        from chord.rollout.hf_engine import HFEngine

        return HFEngine(model_path, cfg.rollout, seed=cfg.run.seed, dtype=cfg.model.dtype)
    from chord.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model_path, cfg.rollout, seed=cfg.run.seed, dtype=cfg.model.dtype, max_model_len=max_len,
                      multiprocess=multiprocess, per_rank=per_rank, sleep=sleeps(cfg, d.world))


def build_learner(cfg: ChordConfig, model_path: str) -> Learner:
    from chord.learner.deepspeed_learner import DeepSpeedLearner, partitioned_loading
    from chord.learner.varlen_attention import attention_for

    # packed micro-batches need varlen attention; it runs padded batches as plain SDPA too
    attn = attention_for(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    ref = None
    with partitioned_loading(cfg):  # ZeRO-3: each rank's host holds only its shard of the weights
        model = load_causal_lm(model_path, DTYPES[cfg.model.dtype], attn)
        if cfg.algorithm.kl_coef != 0.0:
            ref = load_causal_lm(model_path, DTYPES[cfg.model.dtype], attn).eval()
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return DeepSpeedLearner(model, cfg, ref_model=ref)


def quiet_libraries() -> None:
    """Per-file progress bars of datasets/transformers would bury chord's own progress bar."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def build_run(cfg: ChordConfig, d: Dist) -> Run:
    reward_fn = build_reward(cfg.reward)  # a bad reference fails before anything is built
    if needs_engine(cfg):
        engine_mode(cfg, d.world)  # so does an engine that cannot work (e.g. tensor parallel in-process)
    quiet_libraries()
    seed_everything(cfg.run.seed)
    out_dir = Path(cfg.run.output_dir)
    # Rank 0 builds shared artefacts (tiny model, task files) first; the others then find them cached.
    benchmarks: list = []
    if d.is_main:
        model_path = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.revision)
        tokenizer = load_tokenizer(model_path, cfg.model.chat_template, cfg.model.chat_template_kwargs, chat=True)
        prompts, experts = build_data(cfg, tokenizer)
        benchmarks = build_benchmarks(cfg, tokenizer) if evaluates(cfg) else []
    barrier()
    if not d.is_main:
        model_path = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.revision)
        tokenizer = load_tokenizer(model_path, cfg.model.chat_template, cfg.model.chat_template_kwargs, chat=True)
        prompts, experts = build_data(cfg, tokenizer)
        if evaluates(cfg) and placement(cfg, d.world) == "per_rank":  # every engine evaluates its share
            benchmarks = build_benchmarks(cfg, tokenizer, quiet=True)
    if cfg.trainer.epochs is not None:  # resolved once here; lr schedule, bar and checkpoints see the steps
        cfg.trainer.steps = steps_from_epochs(cfg, prompts, experts)
        if d.is_main:
            say(f"trainer.epochs={cfg.trainer.epochs:g} -> {cfg.trainer.steps} steps")
    if d.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(to_yaml(cfg))
    t0 = time.perf_counter()
    learner = build_learner(cfg, model_path)
    say(f"learner: DeepSpeed ZeRO-{learner.zero_stage}, {learner.n_parameters / 1e6:.2f}M parameters, "
        f"{cfg.model.dtype}; ready in {time.perf_counter() - t0:.1f} s")
    faults.signal_self("TERM_IN_START_UP", "learner", d.is_main)  # tests only
    t0 = time.perf_counter()
    engine = build_engine(cfg, model_path, d)
    if engine is not None:
        say(f"rollout engine ready in {time.perf_counter() - t0:.1f} s")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Run(cfg, d, out_dir, model_path, tokenizer, pad, prompts, experts, reward_fn, engine, learner,
               benchmarks=benchmarks)
