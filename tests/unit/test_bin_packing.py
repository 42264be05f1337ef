"""Rank balancing, token-budget bins and packed collation (chord.bin_packing, chord.batching)."""

import random

import pytest
import torch

from chord.batching import Row, collate, plan_micro_batches
from chord.bin_packing import balance, bin_cost, bins_by_rows, bins_by_tokens
from chord.types import EXPERT, ROLLOUT

pytestmark = pytest.mark.unit


def _lengths(n, seed):
    rng = random.Random(seed)
    return [max(2, int(rng.lognormvariate(4, 1))) % 900 + 2 for _ in range(n)]  # long-tailed, like R1 traces


@pytest.mark.parametrize("seed", range(5))
def test_balance_is_a_partition_and_beats_strided(seed):
    lengths = _lengths(64, seed)
    for world in (1, 2, 3, 8):
        parts = balance(lengths, world)
        assert sorted(i for p in parts for i in p) == list(range(len(lengths)))
        loads = [sum(lengths[i] for i in p) for p in parts]
        # LPT bound: the heaviest rank exceeds the mean by at most one row
        assert max(loads) <= sum(lengths) / world + max(lengths)
        strided = [sum(lengths[r::world]) for r in range(world)]
        assert max(loads) <= max(strided)
        assert parts == balance(lengths, world)  # deterministic: every rank computes the same plan


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_token_bins_never_exceed_the_budget(seed, packed):
    lengths = _lengths(50, seed)
    budget = max(lengths) + 37
    bins = bins_by_tokens(lengths, budget, packed)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(bin_cost([lengths[i] for i in b], packed) <= budget for b in bins)
    # first-fit-decreasing uses few bins: within 11/9 OPT + 1 for packing, OPT >= total / budget
    if packed:
        assert len(bins) <= 11 / 9 * sum(lengths) / budget + 2


def test_padded_cost_counts_padding_and_a_too_long_row_is_refused():
    assert bin_cost([10, 3, 4], packed=True) == 17 and bin_cost([10, 3, 4], packed=False) == 30
    assert bins_by_tokens([10, 10, 3], 20, packed=False) == [[0, 1], [2]]
    assert bins_by_tokens([10, 10, 3], 23, packed=True) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="exceeds the micro-batch budget of 20"):
        bins_by_tokens([21], 20)
    assert bins_by_rows(5, 2) == [[0, 1], [2, 3], [4]]


def _rows(lengths):
    return [Row(list(range(1, n + 1)), [0] * 2 + [ROLLOUT if i % 2 else EXPERT] * (n - 3), [-0.5] * (n - 1), 0.1 * i)
            for i, n in enumerate(lengths)]


def test_every_rank_gets_the_same_number_of_micro_batches():
    rows = _rows([40, 5, 5, 5, 5, 5])
    plan = plan_micro_batches(rows, 2, max_tokens=40, rows_per_micro=1, packed=True)
    assert [len(p) for p in plan] == [1, 1]  # the 40-token row alone; the five short rows share a bin
    plan = plan_micro_batches(_rows([40, 12, 12, 12, 12]), 2, max_tokens=40, rows_per_micro=1, packed=False)
    counts = [len(p) for p in plan]
    assert counts[0] == counts[1] and [] in plan[0] + plan[1]  # the rank with fewer bins pads
    assert sorted(len(r.input_ids) for p in plan for b in p for r in b) == [12, 12, 12, 12, 40]


def test_packed_collation_keeps_rows_apart():
    rows = _rows([6, 4, 5])
    b = collate(rows, pad_id=0, packed=True)
    assert b.input_ids.shape == (1, 15) and b.attention_mask is None
    assert b.cu_seqlens.tolist() == [0, 6, 10, 15]
    assert b.position_ids[0].tolist() == [*range(6), *range(4), *range(5)]
    for r, (a, e) in zip(rows, [(0, 6), (6, 10), (10, 15)]):
        assert b.input_ids[0, a:e].tolist() == r.input_ids
        assert b.targets[0, a : e - 1].tolist() == r.input_ids[1:]  # next token of the same row
        assert b.kind[0, a : e - 1].tolist() == r.kind and b.kind[0, e - 1] == 0  # a row's end predicts nothing
        assert torch.allclose(b.advantages[0, a : e - 1], torch.tensor(r.advantage))
    padded = collate(rows, pad_id=0, packed=False)
    assert padded.input_ids.shape == (3, 6) and padded.attention_mask.sum().item() == 15
    assert padded.kind.sum() == b.kind.sum() and torch.equal(padded.scored.sum(), b.scored.sum())


def test_a_padding_micro_batch_scores_one_ignored_token():
    for packed in (True, False):
        b = collate([], pad_id=7, packed=packed)
        assert b.input_ids.tolist() == [[7]] and b.scored.tolist() == [[True]] and b.kind.tolist() == [[0]]
