"""Two ranks on one GPU through vLLM's external_launcher (chord's per_rank placement), with sleep mode.

    torchrun --nproc_per_node 2 benchmarks/gpu_smoke/external_launcher.py MODEL_DIR
Both ranks use cuda:0 (LOCAL_RANK=0) under a gloo default group (NCCL refuses two ranks on one GPU).
Each builds chord's VLLMEngine(per_rank=True, sleep=True), i.e. LLM(distributed_executor_backend=
"external_launcher", gpu_memory_utilization=0.25, enable_sleep_mode=True, worker_extension_cls=chord's
WeightSyncExtension), generates, sleeps (level 2), pushes perturbed weights (wake weights,
chord_reload_begin / _bucket / _end, wake kv_cache, reset the prefix cache), generates again and shuts
down. Then: the default group must have been destroyed by vLLM's shutdown, and chord's
restore_after_engine must re-create it (here on gloo). Each rank prints RESULT {json}; rank 0 adds
whether both ranks sampled the same tokens and whether the sampled log-probs follow the pushed weights.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

GAP = 1e-3  # chord's fp32 trainer.max_logprob_gap


def logprob_gap(model_dir: str, named: list, rollouts: list) -> float:
    """max |log p_HF(token) - vLLM's sampling log-prob| with the pushed weights (fp32, temperature 1)."""
    import torch
    from probes import device

    from chord.models.load import load_causal_lm

    dev = device()
    model = load_causal_lm(model_dir, torch.float32).to(dev).eval()
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, t in named:
            params[n].copy_(t)
        worst = 0.0
        for r in rollouts:
            x = torch.tensor([r.prompt_ids + r.response_ids], device=dev)
            logits = model(input_ids=x).logits[0, len(r.prompt_ids) - 1:-1].float()
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(r.response_ids, device=dev)[:, None])[:, 0]
            worst = max(worst, (lp.cpu() - torch.tensor(r.sampling_logprobs)).abs().max().item())
    return worst


def restore_on_gloo() -> bool:
    """chord.distributed.restore_after_engine (its port choice for several ranks), but on gloo: chord
    re-creates NCCL on CUDA, which two ranks on one GPU cannot share."""
    import torch.distributed as dist

    from chord.distributed import group

    real = group._init_group
    group._init_group = lambda device, timeout: dist.init_process_group(backend="gloo")
    try:
        return group.restore_after_engine(True)
    finally:
        group._init_group = real


def run(rank: int, model: str) -> dict:
    import torch
    import torch.distributed as dist
    from probes import buckets, device, perturbed, probe_prompts

    from chord.config import RolloutConfig
    from chord.rollout.vllm_engine import VLLMEngine

    prompts, t0 = probe_prompts(model), time.perf_counter()
    eng = VLLMEngine(model, RolloutConfig(max_new_tokens=16, gpu_memory_utilization=0.25), seed=0,
                     dtype="float32", max_model_len=256, multiprocess=False, per_rank=True, sleep=True)
    out: dict = {"rank": rank, "build_seconds": time.perf_counter() - t0, "sleeps": eng.sleeps}
    before = eng.generate(prompts, 2, step=1)
    eng.sleep()
    named = perturbed(model, 1, device())
    eng.push_weights(buckets(named), version=1)
    after = eng.generate(prompts, 2, step=1)
    out["tokens"] = [r.response_ids for r in after]
    out["changed_by_push"] = [r.response_ids for r in before] != out["tokens"]
    eng.close()
    out["default_group_destroyed"] = not dist.is_initialized()
    out["restored"] = restore_on_gloo()
    x = torch.tensor([float(rank)])
    dist.all_reduce(x)
    out["all_reduce_ok"] = x.item() == 1.0  # ranks 0 + 1 over the re-created group
    gathered: list = [None, None]
    dist.all_gather_object(gathered, out["tokens"])
    out["same_tokens_both_ranks"] = gathered[0] == gathered[1]
    out["gap_after_push"] = logprob_gap(model, named, after)
    out["ok"] = bool((out["sleeps"] or not torch.cuda.is_available()) and out["default_group_destroyed"]
                     and out["restored"] and out["all_reduce_ok"]
                     and out["same_tokens_both_ranks"] and out["gap_after_push"] <= GAP)
    return out


def main(model: str) -> int:
    os.environ["LOCAL_RANK"] = "0"  # both ranks on cuda:0 (vLLM's external_launcher reads LOCAL_RANK)
    os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")  # as chord.build.set_numerics does for fp32
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():  # (on CPU it runs too, without sleeping: to test this script)
        torch.cuda.set_device(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    try:
        out = run(rank, model)
    except Exception as e:  # reported, not raised: the other rank's result still comes back
        out = {"rank": rank, "ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()[-3000:]}
    print("RESULT " + json.dumps(out), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
