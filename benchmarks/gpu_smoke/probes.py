"""Standalone probes behind benchmarks/gpu_smoke.py, each in its own process; each prints `RESULT {json}`.

    python benchmarks/gpu_smoke/probes.py api                # vLLM's API as chord calls it (no engine; CPU too)
    python benchmarks/gpu_smoke/probes.py backends MODEL     # attention backends of fp32 and bf16 engines
    python benchmarks/gpu_smoke/probes.py sleep MODEL        # sleep-mode engine: memory after sleep, 2 push cycles
    python benchmarks/gpu_smoke/probes.py ref MODEL          # the same pushes into an engine that never sleeps
`sleep` and `ref` sample the same (seed, step, slot) after pushing the same weights: the smoke test
compares their token ids. Weights are the model's own plus seeded noise (`perturbed`), identical in
every process, so external_launcher.py uses them too.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import time
import typing

GIB = 2**30
UTIL = 0.3  # the engines' gpu_memory_utilization (sleep / ref probes)
STEP, SAMPLES, NEW_TOKENS = 7, 4, 16  # the fixed (step, slots) whose samples are compared
LLM_METHODS = {"sleep": "level", "wake_up": "tags", "collective_rpc": "args", "reset_prefix_cache": None}
ENGINE_FIELDS = ("logprobs_mode", "worker_extension_cls", "enable_sleep_mode", "distributed_executor_backend")
# what chord's VLLMEngine passes to LLM(...) besides engine_kwargs (chord/rollout/vllm_engine.py)
CHORD_LLM_KWARGS = ("model", "dtype", "seed", "max_model_len", "enforce_eager", "gpu_memory_utilization",
                    "tensor_parallel_size", "logprobs_mode", "worker_extension_cls")


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def version_facts() -> dict:
    import vllm

    import chord
    from chord.config.versions import TESTED, installed, release

    v = installed("vllm") or vllm.__version__
    lo, hi = TESTED["vllm"]
    return {"vllm": vllm.__version__, "distribution_version": v, "tested": lo <= release(v) < hi,
            "tested_range": f">={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}", "chord": chord.__file__}


def reload_facts() -> tuple[dict, list[str]]:
    """The layer-wise reload functions weight_ext.py calls, and the other vLLM names chord imports."""
    import importlib

    names = {"vllm.model_executor.model_loader.reload.layerwise": ("initialize_layerwise_reload",
                                                                    "finalize_layerwise_reload"),
             "vllm.config": ("set_current_vllm_config",),
             "vllm.model_executor.layers.attention_layer_base": ("AttentionLayerBase",),
             "vllm": ("LLM", "SamplingParams", "TokensPrompt")}
    found, problems = {}, []
    for mod, attrs in names.items():
        try:
            m = importlib.import_module(mod)
        except ImportError as e:
            problems.append(f"cannot import {mod}: {e}")
            continue
        for a in attrs:
            found[f"{mod}.{a}"] = hasattr(m, a)
            if not hasattr(m, a):
                problems.append(f"{mod}.{a} missing")
    return found, problems


def signature_facts() -> tuple[dict, list[str]]:
    """inspect.signature of LLM.__init__ and the methods chord calls, and the parameters it passes them."""
    from vllm import LLM

    sigs, problems = {"__init__": str(inspect.signature(LLM.__init__))}, []
    for name, param in LLM_METHODS.items():
        fn = getattr(LLM, name, None)
        if fn is None:
            problems.append(f"LLM.{name} missing")
            continue
        sig = inspect.signature(fn)
        sigs[name] = str(sig)
        if param is not None and param not in sig.parameters:
            problems.append(f"LLM.{name} has no '{param}' parameter")
        required = [p for p in list(sig.parameters.values())[1:] if p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if param is None and required:
            problems.append(f"LLM.{name} requires {[p.name for p in required]} (chord passes none)")
    return sigs, problems


def engine_arg_facts(llm_params: set[str]) -> tuple[dict, list[str]]:
    """EngineArgs' dataclass fields: those the smoke plan names, and every LLM(...) keyword chord passes
    for each placement on this vLLM release (a keyword LLM.__init__ does not name goes to EngineArgs)."""
    from vllm.engine.arg_utils import EngineArgs

    from chord.config import RolloutConfig
    from chord.config.versions import installed, release
    from chord.rollout.vllm_engine import engine_kwargs

    fields = {f.name: f for f in dataclasses.fields(EngineArgs)}
    problems = [f"EngineArgs has no field '{k}'" for k in ENGINE_FIELDS if k not in fields]
    mode = fields.get("logprobs_mode")
    if mode is not None and "processed_logprobs" not in str(mode.type) + str(typing.get_args(mode.type)):
        problems.append(f"EngineArgs.logprobs_mode ({mode.type}) does not name processed_logprobs")
    version = release(installed("vllm") or "0")
    passed = set(CHORD_LLM_KWARGS)
    for per_rank, multiprocess, cuda in ((True, False, True), (False, False, True), (False, True, True),
                                         (False, False, False)):
        passed |= engine_kwargs(RolloutConfig(), multiprocess=multiprocess, per_rank=per_rank, cuda=cuda,
                                sleeps=True, vllm_version=version).keys()
    unknown = sorted(k for k in passed if k not in llm_params and k not in fields)
    problems += [f"LLM(...) keyword '{k}' (chord passes it) is neither an LLM.__init__ parameter nor an "
                 "EngineArgs field" for k in unknown]
    return {"fields_checked": {k: k in fields for k in ENGINE_FIELDS}, "chord_keywords": sorted(passed)}, problems


def cumem_facts() -> tuple[dict, list[str]]:
    """chord.rollout.vllm_engine.cumem_in_use returns 0 when CuMemAllocator cannot be imported: on CUDA
    that would silently switch off the one-sleep-mode-engine-per-process guard."""
    import torch

    try:
        from vllm.device_allocator.cumem import CuMemAllocator  # noqa: F401
        ok, why = True, ""
    except ImportError as e:
        ok, why = False, str(e)
    problems = [f"vllm.device_allocator.cumem does not import on CUDA: {why}"] if torch.cuda.is_available() \
        and not ok else []
    return {"cumem_importable": ok, "cumem_error": why}, problems


def api() -> dict:
    """Step 1: every vLLM name, parameter and EngineArgs field chord relies on, without building an engine."""
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    out = version_facts()
    out["imports"], problems = reload_facts()
    out["signatures"], p = signature_facts()
    problems += p
    llm_params = set(inspect.signature(LLM.__init__).parameters)
    out["engine_args"], p = engine_arg_facts(llm_params)
    problems += p
    c, p = cumem_facts()
    out.update(c)
    problems += p
    SamplingParams(n=2, temperature=1.0, top_p=1.0, max_tokens=4, logprobs=0, seed=1)  # chord's fields
    return {**out, "problems": problems, "seconds": time.perf_counter() - t0}


def probe_prompts(model: str, n: int = 3) -> list:
    from chord.models.load import load_tokenizer
    from chord.models.tiny import sum_prompts

    return sum_prompts(load_tokenizer(model), n)


def rollout_cfg(**kw):
    from chord.config import RolloutConfig

    return RolloutConfig(max_new_tokens=NEW_TOKENS, **kw)


def backends(model: str) -> dict:
    """Step 1b: a tiny in-process engine per dtype, asked through chord's worker extension which attention
    backend its layers run (CUDA: fp32 cannot use FlashAttention; Triton's dots follow TRITON_F32_DEFAULT)."""
    from chord.rollout.vllm_engine import VLLMEngine

    out: dict = {"triton_f32_default": os.environ.get("TRITON_F32_DEFAULT")}
    for dtype in ("float32", "bfloat16"):
        t0 = time.perf_counter()
        eng = VLLMEngine(model, rollout_cfg(gpu_memory_utilization=0.15), seed=0, dtype=dtype, max_model_len=256,
                         multiprocess=False)
        try:
            out[dtype] = sorted({b for r in eng.llm.collective_rpc("chord_attention_backends") for b in r})
            # VLLMEngine.close() calls this under contextlib.suppress: if it were gone, nothing would say so
            out["engine_core_shutdown"] = hasattr(getattr(eng.llm.llm_engine, "engine_core", None), "shutdown")
        finally:
            eng.close()
        out[f"{dtype}_seconds"] = time.perf_counter() - t0
    return out


def perturbed(model: str, cycle: int, device: str) -> list:
    """The model's weights plus noise seeded by `cycle` (CPU generator: the same in every process)."""
    import torch

    from chord.models.load import load_causal_lm

    m = load_causal_lm(model, torch.float32)
    g = torch.Generator().manual_seed(1000 + cycle)
    with torch.no_grad():
        return [(n, (p + 0.02 * torch.randn(p.shape, generator=g)).to(device)) for n, p in m.named_parameters()]


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def buckets(named: list, per: int = 4):
    return (named[i:i + per] for i in range(0, len(named), per))


def memory_after_sleep(free_awake: int, total: int) -> dict:
    """After engine.sleep(): how much is free and released, and whether this process can allocate 0.8 x free
    (vLLM 0.34's extensible KV cache caps torch's memory and sleep does not lift it: review finding 1)."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    try:
        x = torch.empty(int(0.8 * free), dtype=torch.uint8, device="cuda")
        x[-1] = 1
        del x
        alloc = True
    except torch.OutOfMemoryError:
        alloc = False
    torch.cuda.empty_cache()
    need = UTIL * total - 2 * GIB
    return {"free_gib": free / GIB, "released_gib": (free - free_awake) / GIB, "need_gib": need / GIB,
            "free_ok": free >= need, "released_ok": free - free_awake >= need, "alloc_0.8_free_ok": alloc}


def cycles(model: str, sleep: bool) -> dict:
    """Step 3b: two cycles of (sleep, measure memory,) push, generate: the sampled ids and log-probs of each;
    then close (asleep) and how much sleep-mode memory the process still holds."""
    import torch

    from chord.rollout.vllm_engine import VLLMEngine, cumem_in_use

    prompts = probe_prompts(model)
    eng = VLLMEngine(model, rollout_cfg(gpu_memory_utilization=UTIL), seed=0, dtype="float32", max_model_len=256,
                     multiprocess=False, sleep=sleep)
    out: dict = {"sleeps": eng.sleeps, "cycles": [],
                 "backends": sorted({b for r in eng.llm.collective_rpc("chord_attention_backends") for b in r})}
    for cycle in (1, 2):
        record: dict = {}
        if eng.sleeps:  # CUDA only (on CPU the probe runs without sleeping, to test the probe itself)
            free_awake, total = torch.cuda.mem_get_info()
            eng.sleep()
            record = memory_after_sleep(free_awake, total)
        eng.push_weights(buckets(perturbed(model, cycle, device())), version=cycle)
        rollouts = eng.generate(prompts, SAMPLES, step=STEP)
        record["tokens"] = [r.response_ids for r in rollouts]
        record["logprobs"] = [r.sampling_logprobs for r in rollouts]
        out["cycles"].append(record)
    emit(out)  # what came before close, should closing crash the process
    eng.sleep()  # closed asleep, as a staged recipe's SFT stage closes after its last evaluation
    eng.close()
    out["cumem_after_close_mib"] = cumem_in_use() / 2**20
    if eng.sleeps:
        out["second_engine"] = second_engine(model, prompts[:1])
    return out


def second_engine(model: str, prompts: list) -> dict:
    """A second sleep-mode engine in this process after the first closed asleep, as a staged recipe's next
    stage builds one: vLLM 0.32/0.33 assert the sleep allocator is empty, and its C allocator's error flag
    is sticky (a failed unmap while freeing a sleeping engine's memory would fail every later allocation)."""
    from chord.rollout.vllm_engine import VLLMEngine

    t0 = time.perf_counter()
    try:
        eng = VLLMEngine(model, rollout_cfg(gpu_memory_utilization=0.15), seed=0, dtype="float32",
                         max_model_len=256, multiprocess=False, sleep=True)
        n = len(eng.generate(prompts, 1, step=1))
        eng.close()
        return {"ok": n == len(prompts), "seconds": time.perf_counter() - t0}
    except Exception as e:  # reported: the first engine's results still come back
        return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:500]}", "seconds": time.perf_counter() - t0}


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "api":
        emit(api())
    elif what == "backends":
        emit(backends(argv[1]))
    elif what in ("sleep", "ref"):
        emit(cycles(argv[1], sleep=what == "sleep"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
