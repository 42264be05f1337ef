"""Micro-batching and data-parallel splits leave the step gradient unchanged (global denominators)."""

from functools import partial

import pytest
import torch

from chord.algo.chord_loss import LossSettings, chord_loss
from chord.batching import Row, aggregation_scales, collate, count_tokens, micro_batches, plan_micro_batches
from chord_kernels.full import token_logp_entropy

pytestmark = pytest.mark.unit
V, H = 37, 16
DEFAULT = LossSettings(sft_weight="phi", entropy_coef=0.01)


class ToyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(V, H)
        self.head = torch.nn.Linear(H, V, bias=False)

    def loss(self, batch, mu, n_r, n_e, settings=None):
        settings = settings or DEFAULT
        hidden = self.emb(batch.input_ids)
        sel = batch.scored
        logp, ent = token_logp_entropy(hidden[sel], self.head.weight, None, batch.targets[sel], entropy_grad=True)
        return chord_loss(logp, ent, batch.kind[sel], batch.old_logp[sel], batch.advantages[sel], mu=mu,
                          settings=settings, n_rollout=n_r, n_expert=n_e,
                          scale=None if batch.scale is None else batch.scale[sel])[0]


def _rows(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        p, r = 3 + i % 3, 2 + (i * 5) % 7
        ids = torch.randint(0, V, (p + r,), generator=g).tolist()
        k = 2 if i % 4 == 3 else 1  # every fourth row is expert
        kind = [0] * (p - 1) + [k] * r
        old = [0.0] * (p - 1) + (-torch.rand(r, generator=g) * 3).tolist()
        rows.append(Row(ids, kind, old, float(torch.randn(1, generator=g))))
    return rows


def _grad_of(rows, splits, mu=0.3, **settings):
    model = ToyLM()
    n_r, n_e = count_tokens(rows)
    total = 0.0
    for part in splits(rows):
        for mb in part:
            loss = model.loss(mb, mu, n_r, n_e, **settings)
            loss.backward()
            total += loss.item()
    return total, torch.cat([p.grad.flatten() for p in model.parameters()])


def _planned(world, packed, max_tokens=None, rows=1):
    def split(rs):
        plan = plan_micro_batches(rs, world, max_tokens=max_tokens, rows_per_micro=rows, packed=packed)
        return [[collate(b, 0, packed) for b in per_rank] for per_rank in plan]
    return split


# every loss aggregation mode (GRPO term, SFT term) and the other per-token weights (docs/algorithm.md)
MODES = [("token-mean", "token-mean", {}), ("seq-mean-token-mean", "seq-mean-token-mean", {}),
         ("seq-mean-token-sum", "seq-mean-token-sum", {}), ("token-mean", "seq-mean-token-mean", {}),
         ("seq-mean-token-sum", "token-mean",
          {"settings": LossSettings(sft_weight="power", sft_exponents=(0.5, 2.0), sft_cutoff_prob=0.9, tis_cap=2.0,
                                    dual_clip=3.0, entropy_coef=0.01)})]


@pytest.mark.parametrize("grpo_mode,sft_mode,over", MODES, ids=lambda v: v if isinstance(v, str) else "")
def test_micro_batch_and_rank_splits_give_same_gradient(grpo_mode, sft_mode, over):
    rows = _rows()
    aggregation_scales(rows, grpo_mode, sft_mode)
    _grad = partial(_grad_of, **over)
    ref_loss, ref = _grad(rows, lambda rs: [micro_batches(rs, 8, 0)])  # 1 x 8
    for name, split in {
        "8x1": lambda rs: [micro_batches(rs, 1, 0)],
        "8x1 packed": lambda rs: [micro_batches(rs, 1, 0, packed=True)],
        "1x8 packed": lambda rs: [micro_batches(rs, 8, 0, packed=True)],
        "2 ranks x 4 rows": _planned(2, False, rows=4),
        "2 ranks x 2 rows": _planned(2, False, rows=2),
        "3 ranks, 12-token packed bins (padding micro-batches)": _planned(3, True, max_tokens=12),
        "2 ranks, 16-token padded bins": _planned(2, False, max_tokens=16),
    }.items():
        loss, g = _grad(rows, split)
        assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7), name
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-7, msg=name)


def test_padding_does_not_change_loss():
    rows = _rows()
    n_r, n_e = count_tokens(rows)
    model = ToyLM()
    alone = sum(model.loss(micro_batches([r], 1, 0)[0], 0.3, n_r, n_e).item() for r in rows)
    together = model.loss(micro_batches(rows, 8, 0)[0], 0.3, n_r, n_e).item()
    assert together == pytest.approx(alone, rel=1e-5)
