"""DeepSpeed learner: both losses in one backward pass, one optimizer step per training step.

Gradient scaling: each micro-batch loss already carries the *global* denominators (token counts of
the whole step on all ranks), so the step gradient is the plain sum of micro-batch gradients over
micro-batches and ranks. DeepSpeed would divide by the accumulation steps (we pass
scale_wrt_gas=False) and average over data-parallel ranks (we multiply the loss by world size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist

from chord.algo.chord_loss import LossSettings, chord_loss
from chord.config import ChordConfig, ConfigError
from chord.learner.guarded_adamw import GuardedAdamW, NonFiniteError
from chord.learner.head import ChordHead
from chord.learner.token_stats import token_logp_entropy
from chord.step_metrics import merge
from chord.types import TokenBatch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build_ds_config(cfg: ChordConfig, grad_accum: int, world: int) -> dict[str, Any]:
    """DeepSpeed JSON from the recipe's `deepspeed:` section (or a user file), batch sizes filled in."""
    if cfg.deepspeed.config_path:
        with open(cfg.deepspeed.config_path) as f:
            ds = json.load(f)
    else:
        ds = {"zero_optimization": {"stage": cfg.deepspeed.zero_stage}, "bf16": {"enabled": cfg.deepspeed.bf16}}
    ds["train_micro_batch_size_per_gpu"] = cfg.trainer.micro_batch_size
    ds["gradient_accumulation_steps"] = grad_accum
    ds["train_batch_size"] = cfg.trainer.micro_batch_size * grad_accum * world
    ds["gradient_clipping"] = cfg.trainer.grad_clip
    ds.setdefault("steps_per_print", 10**9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


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


class DeepSpeedLearner:
    def __init__(self, model: torch.nn.Module, cfg: ChordConfig, grad_accum: int, ref_model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.ds_config = build_ds_config(cfg, grad_accum, self.world)
        stage = self.ds_config.get("zero_optimization", {}).get("stage", 0)
        if stage == 3 and grad_accum > 1:
            # Measured: ZeRO-3 with DeepSpeed-managed accumulation and scale_wrt_gas=False gave a wrong
            # step (grad norm 0.19 vs 19.28 for the same rows at 1 micro-batch). Refuse, never train wrong.
            raise ConfigError(f"'trainer.micro_batch_size' = {cfg.trainer.micro_batch_size} gives {grad_accum} "
                              "micro-batches per rank; ZeRO-3 supports only one: raise it to the rows per rank")
        model.lm_head = ChordHead(model.lm_head)
        t = cfg.trainer
        # ZeRO-0 calls this optimizer directly: GuardedAdamW skips non-finite steps. ZeRO-1/2/3 wrap it
        # and run their own NaN/Inf check (and accept only optimizers they know).
        opt = (GuardedAdamW if stage == 0 else torch.optim.AdamW)(
            [p for p in model.parameters() if p.requires_grad],
            lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps, weight_decay=t.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=self.ds_config
        )
        self.zero_stage = self.engine.zero_optimization_stage()
        self.grad_accum = grad_accum
        self.ref_model = ref_model
        a = cfg.algorithm
        self.settings = LossSettings(
            sft_weight=a.sft_weight, eps_low=a.clip_eps_low, eps_high=a.clip_eps_high,
            dual_clip=a.dual_clip, kl_coef=a.kl_coef, entropy_coef=a.entropy_coef,
        )
        self.temperature = cfg.rollout.temperature
        self._loss_fn = self._build_loss_fn()

    # -- loss ----------------------------------------------------------------------------------------
    def _build_loss_fn(self):
        """Chosen once (STYLE item 14): (hidden, weight, bias, tokens) -> (loss, metrics).

        torch: full fp32 logits of the scored tokens, autograd, chord.algo.chord_loss.
        auto | naive | chunked | triton: the fused chord_kernels op (no [tokens, vocab] logits with
        chunked/triton); metrics are then computed from its detached per-token log-probs/entropy.
        """
        impl, s = self.cfg.loss.impl, self.settings

        def torch_fn(hidden, weight, bias, tok, mu, n_rollout, n_expert):
            logp, entropy = token_logp_entropy(hidden, weight, bias, tok["targets"], temperature=self.temperature,
                                               entropy_grad=s.entropy_coef != 0.0)
            return chord_loss(logp, entropy, tok["kind"], tok["old"], tok["adv"], mu=mu, settings=s,
                              n_rollout=n_rollout, n_expert=n_expert, ref_logp=tok["ref"])

        if impl == "torch":
            return torch_fn
        import chord_kernels

        def fused_fn(hidden, weight, bias, tok, mu, n_rollout, n_expert):
            out = chord_kernels.chord_loss(
                hidden, weight, tok["targets"], tok["kind"], tok["old"], tok["adv"], tok["ref"], bias, mu=mu,
                phi_mode=s.sft_weight, eps_low=s.eps_low, eps_high=s.eps_high, dual_clip=s.dual_clip,
                kl_coef=s.kl_coef, entropy_coef=s.entropy_coef, temperature=self.temperature,
                n_rollout=n_rollout, n_expert=n_expert, impl=impl, chunk_size=self.cfg.loss.chunk_size)
            with torch.no_grad():
                _, metrics = chord_loss(out.logp, out.entropy, tok["kind"], tok["old"], tok["adv"], mu=mu, settings=s,
                                        n_rollout=n_rollout, n_expert=n_expert, ref_logp=tok["ref"])
            metrics["loss/total"] = out.loss.detach()
            return out.loss, metrics

        return fused_fn

    def _hidden(self, batch: TokenBatch) -> torch.Tensor:
        module = self.engine.module
        out = module.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        return out.last_hidden_state[:, :-1]  # [B, L-1, H]: position t predicts token t+1

    def micro_step(self, batch: TokenBatch, mu: float, n_rollout: int, n_expert: int) -> dict[str, torch.Tensor]:
        """Forward, CHORD loss and backward for one micro-batch; returns metric contributions."""
        sel = batch.kind != 0  # [B, L-1]: only scored tokens go through the vocabulary
        hidden = self._hidden(batch)[sel]  # [T, H]
        tok = {"targets": batch.targets[sel], "kind": batch.kind[sel], "old": batch.old_logp[sel],
               "adv": batch.advantages[sel], "ref": self._ref_logp(batch, sel) if self.settings.kl_coef else None}
        loss, metrics = self.engine.module.lm_head(
            hidden, fn=lambda h, w, b: self._loss_fn(h, w, b, tok, mu, n_rollout, n_expert))
        # scale_wrt_gas=False + x world: DeepSpeed's averaging undone, global denominators rule.
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        if self.engine.is_gradient_accumulation_boundary() and self.zero_stage == 0:
            # ZeRO-0 keeps no norm of its own: full reduced grads are in .grad now, before clipping
            norms = [p.grad.float().norm() for p in self.engine.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.stack(norms).norm()) if norms else 0.0
        self.engine.step()  # a no-op until the accumulation boundary
        return metrics

    @torch.no_grad()
    def _ref_logp(self, batch: TokenBatch, sel_mask: torch.Tensor) -> torch.Tensor:
        assert self.ref_model is not None
        out = self.ref_model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        hidden = out.last_hidden_state[:, :-1][sel_mask]
        head = self.ref_model.lm_head
        logp, _ = token_logp_entropy(hidden, head.weight, head.bias, batch.targets[sel_mask], temperature=self.temperature)
        return logp

    def train_step(self, micro: list[TokenBatch], mu: float, n_rollout: int, n_expert: int) -> dict[str, torch.Tensor]:
        """All micro-batches of this rank, then the optimizer step (at DeepSpeed's boundary)."""
        if len(micro) != self.grad_accum:
            raise RuntimeError(f"expected {self.grad_accum} micro-batches, got {len(micro)}")
        self.engine.train()
        self._grad_norm: float | None = None
        skipped_before = self.engine.skipped_steps
        metrics = merge(self.micro_step(mb, mu, n_rollout, n_expert) for mb in micro)
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
        # identical on every rank: reduce with max, not sum
        metrics["max:optim/grad_norm"] = torch.tensor(gn)
        metrics["max:optim/lr"] = torch.tensor(float(self.engine.get_lr()[0]))
        metrics["max:optim/skipped"] = torch.tensor(float(skipped))
        return metrics

    # -- weights -------------------------------------------------------------------------------------
    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full HF-named weights, on every rank (all ranks must iterate: ZeRO-3 gathers collectively)."""
        module = self.engine.module
        for name, p in module.named_parameters():
            if self.zero_stage == 3:
                with deepspeed.zero.GatheredParameters([p]):
                    yield name, p.data.detach().clone()
            else:
                yield name, p.detach()

    def save_checkpoint(self, path: str, tag: str, client_state: dict[str, Any]) -> None:
        # save_latest=False: chord.checkpoint owns the `latest` pointer (written after the rename)
        self.engine.save_checkpoint(path, tag=tag, client_state=client_state, save_latest=False)

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
        state = {n: t.cpu().clone() for n, t in self.named_weights()}
        if self.rank == 0:
            self.engine.module.save_pretrained(str(out_dir), state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(str(out_dir))

