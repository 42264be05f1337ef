"""Peak extra host memory of one weight push, measured (run by test_weight_push_memory.py).

    python -m tests.integration.push_memory MODEL_DIR BUCKET_MB bucketed|whole
A real DeepSpeed learner (1 rank, CPU, ZeRO-3) iterates its weight buckets and turns each into what
an engine process receives (chord.rollout.weight_ext.to_wire: raw bytes), dropping it before the
next, as VLLMEngine.push_weights does; `whole` first collects every bucket (the old full-model push).
Prints the peak RSS over the RSS before the push, in bytes (VmHWM after a reset via clear_refs).
"""

import sys

if __name__ == "__main__":
    from benchmarks.bench_loss import _rss as rss  # the /proc/self/status reader the memory benchmarks use
    from chord.build import build_learner
    from chord.config.recipe import load_config
    from chord.distributed import init_distributed, shutdown
    from chord.rollout.weight_ext import to_wire

    model, bucket_mb, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    init_distributed()
    cfg = load_config(None, [f"model.path={model}", "deepspeed.zero_stage=3", f"rollout.weight_bucket_mb={bucket_mb}"])
    learner = build_learner(cfg, model)
    limit = int(bucket_mb * 2**20)
    base = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS
    if mode == "bucketed":
        sent = sum(len(to_wire(b)) for b in learner.weight_buckets(limit))
    else:
        held = [to_wire(b) for b in learner.weight_buckets(limit)]
        sent = sum(len(h) for h in held)
    print(f"RESULT {rss('VmHWM') - base} {sent}", flush=True)
    shutdown()
