"""One CHORD optimizer step on fixed rows, for the world-size invariance test.

    python tests/integration/learner_step.py OUT.pt MODEL_DIR ZERO_STAGE MICRO_BATCH [LOSS_IMPL [KEY=VALUE ...]]
    torchrun --nproc_per_node 2 tests/integration/learner_step.py OUT.pt MODEL_DIR ZERO_STAGE MICRO_BATCH
Writes the updated full weights and the step metrics (rank 0).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from chord.batching import Row, count_tokens, micro_batches, shard  # noqa: E402
from chord.build import build_learner  # noqa: E402
from chord.config import load_config  # noqa: E402
from chord.distributed import init_distributed, shutdown  # noqa: E402
from chord.step_metrics import all_reduce, to_floats  # noqa: E402


def fixed_rows(vocab: int, n: int = 8) -> list[Row]:
    g = torch.Generator().manual_seed(1234)
    rows = []
    for i in range(n):
        p, r = 4 + i % 3, 3 + (i * 5) % 6
        ids = torch.randint(3, vocab, (p + r,), generator=g).tolist()
        k = 2 if i % 4 == 3 else 1
        old = [0.0] * (p - 1) + (-torch.rand(r, generator=g) * 4).tolist()
        rows.append(Row(ids, [0] * (p - 1) + [k] * r, old, float(torch.randn(1, generator=g))))
    return rows


if __name__ == "__main__":
    out, model_dir, stage, mbs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    impl = sys.argv[5] if len(sys.argv) > 5 else "torch"
    d = init_distributed()
    cfg = load_config(None, [f"model.path={model_dir}", f"deepspeed.zero_stage={stage}",
                             f"trainer.micro_batch_size={mbs}", "trainer.grad_clip=1000.0",
                             # Adam with eps >> |g| moves each weight by ~lr * g on its first step: weights
                             # then expose the gradient itself (plain Adam is blind to its scale and
                             # amplifies summation-order noise on near-zero gradients)
                             "trainer.lr=1.0", "trainer.adam_eps=1000.0", "trainer.weight_decay=0.0",
                             "algorithm.mu.peak=0.3", "algorithm.mu.valley=0.3", "algorithm.entropy_coef=0.01",
                             f"loss.impl={impl}", "loss.chunk_size=7", "rollout.temperature=0.8", *sys.argv[6:]])
    rows = fixed_rows(vocab=256)
    mine = shard(rows, d.rank, d.world)
    micro = micro_batches(mine, mbs, 0)
    torch.manual_seed(0)
    learner = build_learner(cfg, model_dir, grad_accum=len(micro))
    n_r, n_e = count_tokens(rows)
    m = to_floats(all_reduce(learner.train_step(micro, 0.3, n_r, n_e)))
    state = {n: t.cpu().clone() for n, t in learner.named_weights()}
    if d.rank == 0:
        torch.save({"weights": state, "metrics": m,
                    "checkpointing": learner.engine.module.is_gradient_checkpointing}, out)
    shutdown()
