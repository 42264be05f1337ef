"""Bucketed weights equal the learner's full weights, and a bucketed push lands them in an engine.

    python tests/integration/bucket_equivalence.py MODEL_DIR [bfloat16]
A real DeepSpeed ZeRO-3 learner on this machine's device (CUDA when present): `weight_buckets` with a
bucket smaller than the largest tensor yields every parameter once, bit-equal to `named_weights`; pushed
into an HFEngine (transformers, same device) bucket by bucket, the engine's parameters equal them.
Prints RESULT ok|mismatch and the counts. Used on GPU machines (no vLLM needed) and in CI on CPU.
"""

import sys

if __name__ == "__main__":
    import torch

    from chord.build import build_learner
    from chord.config import RolloutConfig
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed, shutdown
    from chord.rollout.hf_engine import HFEngine

    model, dtype = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "float32")
    init_distributed()
    over = [f"model.path={model}", "deepspeed.zero_stage=3", f"model.dtype={dtype}"]
    cfg = load_config(None, over + (["deepspeed.bf16=true"] if dtype == "bfloat16" else []))
    learner = build_learner(cfg, model)
    full = {n: t.clone() for n, t in learner.named_weights()}
    largest = max(t.numel() * t.element_size() for t in full.values())
    seen, buckets = {}, 0
    for bucket in learner.weight_buckets(largest // 3):
        buckets += 1
        for n, t in bucket:
            assert n not in seen, n
            seen[n] = t.clone()
    same = seen.keys() == full.keys() and all(torch.equal(seen[n], full[n]) for n in full)
    engine = HFEngine(model, RolloutConfig(), seed=0, dtype=dtype)
    engine.model.to(next(iter(full.values())).device)
    with torch.no_grad():
        for p in engine.model.parameters():
            p.zero_()
    engine.push_weights(learner.weight_buckets(largest // 3), version=1)
    got = dict(engine.model.named_parameters())
    landed = all(torch.equal(got[n].detach(), full[n]) for n in full)
    device = next(iter(full.values())).device
    print(f"RESULT {'ok' if same and landed else 'mismatch'} tensors={len(full)} buckets={buckets} "
          f"largest={largest} device={device} dtype={dtype}", flush=True)
    shutdown()
