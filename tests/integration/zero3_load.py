"""Peak host memory and loaded weights of a ZeRO-3 learner, loaded partitioned or whole (run by
tests/integration/test_zero3_load.py and benchmarks/bench_zero3_load.py).

    python -m torch.distributed.run --nproc_per_node 2 -m tests.integration.zero3_load MODEL_DIR OUT_JSON MODE
        [KEY=VALUE ...]
MODE `partitioned` builds the learner as chord does (chord.build.build_learner: the model is created
under deepspeed.zero.Init, each rank's host holds its shard); `whole` is the same body without
partitioned_loading (every rank loads all weights, then DeepSpeed partitions them); `partitioned_dscomm`
(a diagnosis) initializes deepspeed.comm first, then builds as `partitioned`. Each rank records
its RSS before loading, its peak RSS (VmHWM) once the learner is built, a sampled peak of anonymous and
file-backed RSS, and a sha256 over every parameter gathered in full (HF names, model order); rank 0
writes both ranks' records to OUT_JSON.
"""

import hashlib
import json
import sys
import threading
import time


def status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM, RssAnon, RssFile)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


class Sampler(threading.Thread):
    """Max RssAnon / RssFile seen every few milliseconds: VmHWM does not say which kind the peak was."""

    def __init__(self, every_s: float = 0.005):
        super().__init__(daemon=True)
        self.every_s, self.peak_anon, self.peak_file = every_s, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_anon = max(self.peak_anon, status("RssAnon"))
            self.peak_file = max(self.peak_file, status("RssFile"))
            time.sleep(self.every_s)

    def stop(self) -> None:
        self.done.set()
        self.join()


LOADS: list[dict] = []  # one record per model loaded (policy, KL reference)


def observed(load):
    """`load` (chord's load_causal_lm), recording whether transformers saw ZeRO-3 (zero.Init) while it ran,
    whether the model came back partitioned, and the RSS right after."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    def wrapper(*args, **kwargs):
        zero3 = is_deepspeed_zero3_enabled()
        model = load(*args, **kwargs)
        LOADS.append({"zero3_enabled": zero3, "partitioned": all(hasattr(p, "ds_id") for p in model.parameters()),
                      "rss_after_load": status("VmRSS"), "peak_rss_after_load": status("VmHWM")})
        return model

    return wrapper


def build(cfg, model_dir: str, mode: str):
    """The learner, through chord.build.build_learner (`partitioned`) or its body without the context
    manager (`whole`). `partitioned_dscomm` is `partitioned` after deepspeed.comm was initialized, as
    deepspeed.initialize would do it (a diagnosis: zero.Init reads the world size from deepspeed.comm)."""
    import chord.build
    from chord.build import build_learner

    chord.build.load_causal_lm = observed(chord.build.load_causal_lm)  # an observer: same call, same result
    if mode == "partitioned_dscomm":
        import deepspeed
        from deepspeed.accelerator import get_accelerator

        deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(), verbose=False)
        mode = "partitioned"
    if mode == "partitioned":
        return build_learner(cfg, model_dir)
    if mode != "whole":
        raise SystemExit(f"unknown MODE {mode!r} (partitioned | whole | partitioned_dscomm)")
    import torch

    from chord.learner.deepspeed_learner import DeepSpeedLearner
    from chord.learner.varlen_attention import attention_for
    from chord.models.load import DTYPES, load_causal_lm

    attn = attention_for(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[cfg.model.dtype]
    load = observed(load_causal_lm)
    model = load(model_dir, dtype, attn)
    ref = load(model_dir, dtype, attn).eval() if cfg.algorithm.kl_coef != 0.0 else None
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return DeepSpeedLearner(model, cfg, ref_model=ref)


def weight_hash(learner) -> tuple[str, dict[str, str], int]:
    """sha256 over (name, dtype, shape, bytes) of every parameter gathered in full, one per tensor and one
    over all (model order); (overall, {name: sha256 of the bytes}, numel). Collective: every rank iterates."""
    import torch

    h, per, numel = hashlib.sha256(), {}, 0
    for name, t in learner.named_weights(copy=False):  # one parameter gathered at a time
        c = t.detach().cpu().contiguous()
        raw = c.view(-1).view(dtype=torch.uint8).numpy().tobytes()
        h.update(f"{name}|{c.dtype}|{tuple(c.shape)}|".encode())
        h.update(raw)
        per[name] = hashlib.sha256(raw).hexdigest()
        numel += c.numel()
    return h.hexdigest(), per, numel


def main(model_dir: str, out_json: str, mode: str, *overrides: str) -> None:
    import torch.distributed as dist

    import chord.build  # noqa: F401  (transformers, DeepSpeed: imported before the baseline RSS)
    import chord.learner.deepspeed_learner  # noqa: F401
    import chord.learner.varlen_attention  # noqa: F401
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed, shutdown

    d = init_distributed()
    cfg = load_config(None, [f"model.path={model_dir}", "deepspeed.zero_stage=3", *overrides])
    before = status("VmRSS")
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    learner = build(cfg, model_dir, mode)
    build_s = time.perf_counter() - t0
    peak = status("VmHWM")  # the process's peak so far: imports, loading and deepspeed.initialize
    sampler.stop()
    local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
                for p in learner.engine.module.parameters())
    after = status("VmRSS")
    digest, per_tensor, numel = weight_hash(learner)
    rec = {"rank": d.rank, "mode": mode, "rss_before_load": before, "peak_rss": peak, "rss_after_build": after,
           "sampled_peak_rss_anon": sampler.peak_anon, "sampled_peak_rss_file": sampler.peak_file,
           "local_param_numel": local, "build_seconds": build_s, "weights_sha256": digest,
           "tensors": len(per_tensor), "numel": numel, "zero_stage": learner.zero_stage, "world": d.world,
           "loads": LOADS, "tensor_sha256": per_tensor}
    recs = [None] * d.world
    dist.all_gather_object(recs, rec)
    if d.rank == 0:
        with open(out_json, "w") as f:
            json.dump({"mode": mode, "model_dir": model_dir, "overrides": list(overrides), "world": d.world,
                       "ranks": recs}, f, indent=1)
    print(f"RESULT rank={d.rank} mode={mode} peak={peak} sha={digest[:16]}", flush=True)
    shutdown()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
