"""DeepSpeed learner: both losses in one backward pass, one optimizer step per training step.

Gradient scaling: each micro-batch loss already carries the *global* denominators (token counts of
the whole step on all ranks), so the step gradient is the plain sum of micro-batch gradients over
micro-batches and ranks. DeepSpeed would divide by the accumulation steps (we pass
scale_wrt_gas=False) and average over data-parallel ranks (we multiply the loss by world size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist

import chord_kernels
from chord.config import ChordConfig, ConfigError
from chord.learner import loss_settings
from chord.learner.guarded_adamw import GuardedAdamW, NonFiniteError
from chord.learner.policy_step import PolicyStep
from chord.learner.weight_buckets import plan_buckets
from chord.logger import library_stdout
from chord.step_metrics import memory_metrics, merge
from chord.types import ScoredTokens, TokenBatch


def build_ds_config(cfg: ChordConfig, world: int) -> dict[str, Any]:
    """DeepSpeed JSON from the recipe's `deepspeed:` section (or a user file), batch sizes filled in.

    Micro-batches vary in number from step to step (token budgets), so DeepSpeed's accumulation
    count is not used: the learner marks the accumulation boundary itself on the last micro-batch.
    """
    if cfg.deepspeed.config_path:
        with open(cfg.deepspeed.config_path) as f:
            ds = json.load(f)
    else:
        ds = {"zero_optimization": {"stage": cfg.deepspeed.zero_stage}, "bf16": {"enabled": cfg.deepspeed.bf16}}
    ds["train_micro_batch_size_per_gpu"] = 1
    ds["gradient_accumulation_steps"] = 1
    ds["train_batch_size"] = world
    ds["gradient_clipping"] = cfg.trainer.grad_clip
    ds.setdefault("steps_per_print", 10**9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def build_ref_engine(ref_model: torch.nn.Module, ds_config: dict[str, Any]) -> Any:
    """The frozen KL reference as a DeepSpeed inference engine on the accelerator, sharded like the
    policy: ZeRO-3 partitions it when the policy is ZeRO-3 (a full 7B copy per GPU would not fit
    beside the policy); other stages keep a whole copy per rank (stage 0), in the policy's precision."""
    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    ref_cfg = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3 if stage == 3 else 0}}
    for key in ("bf16", "fp16"):
        if key in ds_config:
            ref_cfg[key] = ds_config[key]
    engine, _, _, _ = deepspeed.initialize(model=PolicyStep(ref_model.requires_grad_(False)), config=ref_cfg)
    engine.eval()
    return engine


def lr_lambda(cfg: ChordConfig):
    t = cfg.trainer

    def f(i: int) -> float:  # i = optimizer steps taken so far
        if i < t.lr_warmup_steps:
            return (i + 1) / t.lr_warmup_steps
        if t.lr_schedule == "cosine":
            span = max(1, t.steps - t.lr_warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (i - t.lr_warmup_steps) / span)))
        return 1.0

    return f


@contextlib.contextmanager
def partitioned_loading(cfg: ChordConfig) -> Iterator[None]:
    """ZeRO-3: models loaded inside are created already partitioned across the ranks (transformers runs
    deepspeed.zero.Init while an HfDeepSpeedConfig is alive, modeling_utils `is_deepspeed_zero3_enabled`),
    so no rank materialises the whole model before DeepSpeed partitions it (on a GPU: never the whole model
    on one device). Measured on CPU at 2 ranks, 0.37B parameters: identical weights; host memory after the
    load 1.85 -> 1.16 GiB per rank for a bf16 file loaded as fp32, no saving for a same-dtype file, which
    transformers maps from disk (docs/results.md#zero-3-loading). The config dies on exit, so later loads
    in this process (the HF engine, exports) are ordinary."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    ds_config = build_ds_config(cfg, world)
    if ds_config.get("zero_optimization", {}).get("stage", 0) != 3:
        yield
        return
    from deepspeed.accelerator import get_accelerator
    from transformers.integrations import HfDeepSpeedConfig

    # zero.Init takes the world size from DeepSpeed's communication layer, which only deepspeed.initialize
    # sets up otherwise: without it a 2-rank run fails DeepSpeed's batch-size check (train_batch_size 2 !=
    # 1 * 1 * world 1). It joins the process group chord already made.
    with library_stdout():
        deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name())
    alive = HfDeepSpeedConfig(ds_config)  # transformers keeps only a weak reference to it
    try:
        yield
    finally:
        del alive


class DeepSpeedLearner:
    def __init__(self, model: torch.nn.Module, cfg: ChordConfig, ref_model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.ds_config = build_ds_config(cfg, self.world)
        stage = self.ds_config.get("zero_optimization", {}).get("stage", 0)
        self.policy = model  # the Hugging Face model: config and save_pretrained
        # whole sizes: a parameter created under zero.Init is empty here and keeps its size in ds_numel
        self.n_parameters = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
        step_module = PolicyStep(model)
        t = cfg.trainer
        # ZeRO-0 calls this optimizer directly: GuardedAdamW skips non-finite steps. ZeRO-1/2/3 wrap it
        # and run their own NaN/Inf check (and accept only optimizers they know).
        opt = (GuardedAdamW if stage == 0 else torch.optim.AdamW)(
            [p for p in step_module.parameters() if p.requires_grad],
            lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps, weight_decay=t.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        with library_stdout():  # DeepSpeed prints "... built successfully" as it loads its shm op
            self.engine, _, _, _ = deepspeed.initialize(
                model=step_module, optimizer=opt, lr_scheduler=sched, config=self.ds_config
            )
        self.device = self.engine.device  # every batch tensor moves here, in micro_step
        self.zero_stage = self.engine.zero_optimization_stage()
        self.ref_engine = build_ref_engine(ref_model, self.ds_config) if ref_model is not None else None
        self.settings = loss_settings(cfg)
        # how chord_kernels sweeps the vocabulary, and the sampling temperature the log-probs are taken at
        self.loss_impl = {"temperature": cfg.rollout.temperature, "impl": cfg.loss.impl,
                          "chunk_size": cfg.loss.chunk_size}

    # -- loss ----------------------------------------------------------------------------------------
    def micro_step(self, batch: TokenBatch, mu: float, n_rollout: int, n_expert: int,
                   last: bool) -> dict[str, torch.Tensor]:
        """Forward, CHORD loss and backward of one micro-batch; returns metric contributions."""
        batch = batch.to(self.device)
        ref = self._ref_logp(batch) if self.settings.kl_coef else None

        def fn(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, tok: ScoredTokens):
            # every loss.impl runs the one objective, chord.algo.chord_loss; they differ only in how the
            # vocabulary is swept (full logits, chunked, triton: docs/kernels.md)
            out = chord_kernels.chord_loss(h, w, dataclasses.replace(tok, ref_logp=ref), self.settings, mu=mu,
                                           n_rollout=n_rollout, n_expert=n_expert, bias=b, **self.loss_impl)
            return out.loss, out.metrics

        self.engine.set_gradient_accumulation_boundary(last)  # reduce (ZeRO-1/2/3) after the last one only
        loss, metrics = self.engine(batch, fn)  # the engine's forward: ZeRO-3 accumulates, never overwrites
        # scale_wrt_gas=False + x world: DeepSpeed's averaging undone, global denominators rule.
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        if last and self.zero_stage == 0:
            # ZeRO-0 keeps no norm of its own: full reduced grads are in .grad now, before clipping
            norms = [p.grad.float().norm() for p in self.engine.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.stack(norms).norm()) if norms else 0.0
        return metrics

    @torch.no_grad()
    def _ref_logp(self, batch: TokenBatch) -> torch.Tensor:
        """Log-probs of the scored tokens under the frozen reference (same layout as the policy's)."""
        assert self.ref_engine is not None
        return self.ref_engine.module(batch, lambda h, w, b, tok: chord_kernels.token_logprobs(
            h, w, tok.targets, b, **self.loss_impl)[0])

    def train_step(self, micro: list[TokenBatch], mu: float, n_rollout: int, n_expert: int) -> dict[str, torch.Tensor]:
        """All micro-batches of this rank (the same count on every rank), then one optimizer step."""
        self.engine.train()
        self._grad_norm: float | None = None
        skipped_before = self.engine.skipped_steps
        metrics = merge(self.micro_step(mb, mu, n_rollout, n_expert, last=i == len(micro) - 1)
                        for i, mb in enumerate(micro))
        self.engine.step()
        gn = self.engine.get_global_grad_norm()
        gn = float(self._grad_norm if gn is None else gn)
        skipped = self.engine.skipped_steps > skipped_before
        loss = metrics["loss/total"].detach().clone()
        if dist.is_initialized():
            dist.all_reduce(loss)
        if not skipped and not (math.isfinite(float(loss)) and math.isfinite(gn)):
            # e.g. bf16 ZeRO-1/2, where DeepSpeed does not check: the weights are now unusable
            raise NonFiniteError(f"non-finite loss {float(loss)} / grad norm {gn} was applied by DeepSpeed "
                                 "(this precision/ZeRO combination has no skip); resume from the last checkpoint")
        dev = self.device
        forward_tokens = [float(mb.input_ids.numel()) for mb in micro]  # incl. padding: what memory sees
        # identical on every rank: reduce with max, not sum
        metrics["max:optim/grad_norm"] = torch.tensor(gn, device=dev)
        metrics["max:optim/lr"] = torch.tensor(float(self.engine.get_lr()[0]), device=dev)
        metrics["max:optim/skipped"] = torch.tensor(float(skipped), device=dev)
        metrics["max:batch/micro_batches"] = torch.tensor(float(len(micro)), device=dev)
        metrics.update(memory_metrics(dev))
        metrics["max:batch/forward_tokens_max"] = torch.tensor(max(forward_tokens), device=dev)
        metrics["batch/forward_tokens"] = torch.tensor(sum(forward_tokens), device=dev)
        return metrics

    # -- weights -------------------------------------------------------------------------------------
    def named_weights(self, copy: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """Full HF-named weights, on every rank (all ranks must iterate: ZeRO-3 gathers collectively).

        Under ZeRO-3 a yielded tensor is valid after the next iteration only if `copy` (a rank that
        discards the weights passes copy=False and clones nothing)."""
        for bucket in self.weight_buckets(1):  # a 1-byte limit: one tensor per bucket, one gathered at a time
            for name, t in bucket:
                yield name, (t.detach().clone() if copy and self.zero_stage == 3 else t)

    def weight_buckets(self, limit_bytes: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """HF-named weights in buckets of <= limit_bytes, model order; collective (every rank iterates).

        A bucket's tensors are views of the (gathered) parameters, valid until the next iteration: a
        consumer copies what it keeps (vLLM's reload copies into its own weights). Under ZeRO-3 one
        GatheredParameters call per bucket, not one collective per tensor."""
        params = list(self.engine.module.named_parameters())
        sizes = [getattr(p, "ds_numel", p.numel()) * p.element_size() for _, p in params]
        for idx in plan_buckets(sizes, limit_bytes):
            group = [params[i] for i in idx]
            if self.zero_stage == 3:
                with deepspeed.zero.GatheredParameters([p for _, p in group]):
                    yield [(n, p.data) for n, p in group]
            else:
                yield [(n, p.detach()) for n, p in group]

    def save_checkpoint(self, path: str, tag: str, client_state: dict[str, Any]) -> None:
        # save_latest=False: chord.checkpoint owns the `latest` pointer (written after the rename)
        self.engine.save_checkpoint(path, tag=tag, client_state=client_state, save_latest=False)

    def load_checkpoint(self, path: str, tag: str) -> None:
        """Weights, optimizer and lr schedule from a checkpoint; a model-state layout this version cannot
        read (e.g. written with other module names) is a one-line error naming the keys, not a crash."""
        try:
            self.engine.load_checkpoint(path, tag=tag, load_module_strict=True)
        except RuntimeError as e:
            if "state_dict" not in str(e):
                raise
            first = " ".join(str(e).split())[:300]
            raise ConfigError(f"checkpoint {path}/{tag} holds model states this chord cannot load (expected the "
                              f"Hugging Face names model.*, lm_head.*: {first}); export it with the chord version "
                              "that wrote it (python -m chord.export) and start from the export") from None

    @staticmethod
    def forget_process_groups() -> None:
        """Drop DeepSpeed's cached process groups after torch's default group was re-created."""
        release = getattr(deepspeed.utils.groups, "_release_process_group_references", None)
        if release is None:
            raise RuntimeError("this DeepSpeed version cannot release its cached process groups; "
                               "run each stage as its own launch")
        release(None)

    def export(self, out_dir: Path, tokenizer: Any) -> None:
        """save_pretrained of the policy and tokenizer (rank 0 writes; all ranks gather)."""
        writer = self.rank == 0
        state = {n: t.cpu().clone() for n, t in self.named_weights(copy=False) if writer}  # host copy: writer only
        if writer:
            self.policy.save_pretrained(str(out_dir), state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(str(out_dir))

