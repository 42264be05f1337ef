"""One CHORD optimizer step on fixed rows, for the micro-batching / world-size invariance tests.

    python tests/integration/learner_step.py OUT.pt MODEL_DIR VARIANT [VARIANT ...] [-- KEY=VALUE ...]
    torchrun --nproc_per_node 2 tests/integration/learner_step.py OUT.pt MODEL_DIR VARIANT ...
VARIANT is `zero<stage>:rows<N>` (N rows per right-padded micro-batch) or
`zero<stage>:tokens<N>[:padded]` (a token budget, packed unless `:padded`), optionally `:impl=<loss.impl>`
and `:kl=<coef>` (a KL term to the reference model, which equals the policy at the first step).
Each variant builds a fresh learner from MODEL_DIR (same seed) and takes one step; rank 0 writes
{variant: {weights, metrics, micro_batches, forward_tokens_max, checkpointing}} to OUT.pt.
"""

import sys

import torch  # noqa: E402

from chord.batching import Row, collate, count_tokens, plan_micro_batches  # noqa: E402
from chord.build import build_learner  # noqa: E402
from chord.config.recipe import load_config  # noqa: E402
from chord.distributed import init_distributed, shutdown  # noqa: E402
from chord.step_metrics import all_reduce, to_floats  # noqa: E402


def fixed_rows(vocab: int, n: int = 8) -> list[Row]:
    g = torch.Generator().manual_seed(1234)
    rows = []
    for i in range(n):
        p, r = 4 + i % 3, 3 + (i * 5) % 6 + (9 if i == 2 else 0)  # one long row: uneven bins
        ids = torch.randint(3, vocab, (p + r,), generator=g).tolist()
        k = 2 if i % 4 == 3 else 1
        old = [0.0] * (p - 1) + (-torch.rand(r, generator=g) * 4).tolist()
        rows.append(Row(ids, [0] * (p - 1) + [k] * r, old, float(torch.randn(1, generator=g))))
    return rows


def parse(variant: str) -> tuple[list[str], bool]:
    parts = variant.split(":")
    over = [f"deepspeed.zero_stage={int(parts[0].removeprefix('zero'))}"]
    padded = "padded" in parts
    for p in parts[1:]:
        if p.startswith("rows"):
            over.append(f"trainer.micro_batch_size={int(p[4:])}")
        elif p.startswith("tokens"):
            over += [f"trainer.max_tokens_per_micro_batch={int(p[6:])}", f"trainer.packing={not padded}"]
        elif p.startswith("impl="):
            over.append(f"loss.{p}")
        elif p.startswith("kl="):
            over.append(f"algorithm.kl_coef={float(p[3:])}")
    return over, padded


def one_step(model_dir: str, variant: str, extra: list[str], d) -> dict:
    over, _ = parse(variant)
    cfg = load_config(None, [f"model.path={model_dir}", "trainer.grad_clip=1000.0",
                             # Adam with eps >> |g| moves each weight by ~lr * g on its first step: weights
                             # then expose the gradient itself (plain Adam is blind to its scale and
                             # amplifies summation-order noise on near-zero gradients)
                             "trainer.lr=1.0", "trainer.adam_eps=1000.0", "trainer.weight_decay=0.0",
                             "algorithm.mu.peak=0.3", "algorithm.mu.valley=0.3", "algorithm.entropy_coef=0.01",
                             "loss.chunk_size=7", "rollout.temperature=0.8", "data.expert.max_length=32",
                             "data.prompts.max_prompt_length=8", "rollout.max_new_tokens=20", *over, *extra])
    t = cfg.trainer
    packed = t.max_tokens_per_micro_batch is not None and t.packing
    rows = fixed_rows(vocab=256)
    plan = plan_micro_batches(rows, d.world, max_tokens=t.max_tokens_per_micro_batch,
                              rows_per_micro=t.micro_batch_size, packed=packed)
    micro = [collate(b, 0, packed) for b in plan[d.rank]]
    torch.manual_seed(0)
    learner = build_learner(cfg, model_dir)
    n_r, n_e = count_tokens(rows)
    m = to_floats(all_reduce(learner.train_step(micro, 0.3, n_r, n_e)))
    state = {n: t.cpu().clone() for n, t in learner.named_weights()}
    return {"weights": state, "metrics": m, "micro_batches": [len(p) for p in plan],
            "bins": [[len(b) for b in p] for p in plan],
            "forward_tokens_max": max(mb.input_ids.numel() for mb in micro),
            "checkpointing": learner.policy.is_gradient_checkpointing}


if __name__ == "__main__":
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    out, model_dir, variants = args[0], args[1], args[2:]
    d = init_distributed()
    results = {v: one_step(model_dir, v, extra, d) for v in variants}
    if d.rank == 0:
        torch.save(results, out)
    shutdown()
