"""vLLM rollout engine: B prompts x K samples with sampled-token log-probs, in-place weight reload.

One engine serves all data-parallel ranks and lives on rank 0 (see README "Scaling"). At world
size 1 the engine may run in-process (~3 s start); inside a multi-rank torch.distributed job it
must run in its own process, since an in-process vLLM reuses the job's process group and deadlocks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from chord.config import RolloutConfig
from chord.types import PromptExample, Rollout, Sampling


class VLLMEngine:
    def __init__(
        self,
        model_path: str,
        cfg: RolloutConfig,
        *,
        seed: int,
        dtype: str,
        max_model_len: int,
        multiprocess: bool,
    ) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocess else "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(cfg.kv_cache_gib))))
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bar readable
        from vllm import LLM  # the only place chord imports vLLM

        from chord.rollout.reaper import start_reaper

        self.cfg = cfg
        self.multiprocess = multiprocess
        self.version = 0
        self.seed = seed
        kwargs = {}
        if not multiprocess:
            kwargs["distributed_executor_backend"] = "uni"
        if not torch.cuda.is_available():
            # per-request seeds (exact resume) crash vLLM's CPU sampler under chunked prefill
            kwargs["enable_chunked_prefill"] = False
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=cfg.enforce_eager,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            # old log-probs must be those of the distribution actually sampled (temperature applied)
            logprobs_mode="processed_logprobs",
            worker_extension_cls="chord.rollout.weight_ext.WeightSyncExtension",
            **kwargs,
        )
        # weights reach an engine process through a shared-memory file; in-process they are handed over
        # directly, so no folder is made that a SIGKILL could leave behind
        self._shm = Path(tempfile.mkdtemp(prefix="chord_weights_", dir="/dev/shm" if Path("/dev/shm").is_dir()
                                          else None)) if multiprocess else None
        # a SIGKILLed trainer must not leave the engine process (and its memory) running
        self._reaper = start_reaper([self._shm]) if self._shm is not None else None

    def generate(self, prompts: Sequence[PromptExample], samples: int, step: int,
                 sampling: Sampling | None = None) -> list[Rollout]:
        from vllm import SamplingParams, TokensPrompt

        s = sampling or Sampling(self.cfg.temperature, self.cfg.top_p, self.cfg.max_new_tokens)
        # One seed per (run seed, step, prompt slot): a resumed step samples exactly what the
        # uninterrupted run sampled, whatever the engine did before.
        params = [SamplingParams(
            n=samples,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_new_tokens,
            logprobs=0,  # the sampled token's own log-prob
            seed=(self.seed * 1_000_003 + step * 10_007 + i) % 2**31,
        ) for i in range(len(prompts))]
        reqs = [TokensPrompt(prompt_token_ids=list(p.prompt_ids)) for p in prompts]
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        rollouts: list[Rollout] = []
        for g, (p, out) in enumerate(zip(prompts, outs, strict=True)):
            for c in out.outputs:
                ids = list(c.token_ids)
                lps = [c.logprobs[t][tok].logprob for t, tok in enumerate(ids)]
                rollouts.append(Rollout(
                    prompt_ids=list(p.prompt_ids), response_ids=ids, sampling_logprobs=lps,
                    response_text=c.text, truncated=c.finish_reason == "length",
                    group=g, policy_version=self.version,
                ))
        return rollouts

    def push_weights(self, named: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        tensors = [(n, t.detach().to("cpu").contiguous()) for n, t in named]
        if self._shm is not None:
            from safetensors.torch import save_file

            path = self._shm / "weights.safetensors"
            save_file(dict(tensors), str(path))
            payload: object = str(path)
        else:
            payload = tensors
        loaded = self.llm.collective_rpc("chord_reload_weights", args=(payload,))
        if any(n != len(tensors) for n in loaded):
            raise RuntimeError(f"vLLM reloaded {loaded} tensors, expected {len(tensors)}")
        # Without this, prompts of >= 32 tokens reuse KV blocks computed with the old weights.
        self.llm.reset_prefix_cache()
        self.version = version

    def close(self) -> None:
        if self._shm is not None:
            shutil.rmtree(self._shm, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.llm.llm_engine.engine_core.shutdown()
        del self.llm

