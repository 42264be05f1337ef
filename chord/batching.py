"""Turn rollouts and expert examples into learner rows, rank shards and padded micro-batches.

Position t of a row predicts input_ids[t + 1]; `kind` marks which targets enter which loss:
rollout response tokens (1) enter L_GRPO only, expert response tokens (2) enter L_SFT only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.algo.chord_loss import EXPERT, ROLLOUT
from chord.types import ExpertExample, Rollout, TokenBatch


@dataclass
class Row:
    input_ids: list[int]
    kind: list[int]  # len(input_ids) - 1, aligned to targets
    old_logp: list[float]
    advantage: float


def rollout_row(r: Rollout, advantage: float) -> Row:
    ids = r.prompt_ids + r.response_ids
    n_prompt, n_resp = len(r.prompt_ids), len(r.response_ids)
    kind = [0] * (n_prompt - 1) + [ROLLOUT] * n_resp
    old = [0.0] * (n_prompt - 1) + list(r.sampling_logprobs)
    return Row(ids, kind, old, advantage)


def expert_row(e: ExpertExample) -> Row:
    kind = [EXPERT if m else 0 for m in e.loss_mask[1:]]
    return Row(list(e.input_ids), kind, [0.0] * len(kind), 0.0)


def count_tokens(rows: list[Row]) -> tuple[int, int]:
    """(rollout tokens, expert tokens) of the whole step: the two loss denominators."""
    n_r = sum(k == ROLLOUT for row in rows for k in row.kind)
    n_e = sum(k == EXPERT for row in rows for k in row.kind)
    return n_r, n_e


def shard(rows: list[Row], rank: int, world: int) -> list[Row]:
    """Strided split, so each rank gets a mix of groups; the caller checks divisibility."""
    return rows[rank::world]


def collate(rows: list[Row], pad_id: int) -> TokenBatch:
    """Right-pad a list of rows into one TokenBatch."""
    length = max(len(r.input_ids) for r in rows)
    b = len(rows)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attn = torch.zeros((b, length), dtype=torch.long)
    targets = torch.full((b, length - 1), pad_id, dtype=torch.long)
    kind = torch.zeros((b, length - 1), dtype=torch.long)
    old = torch.zeros((b, length - 1), dtype=torch.float32)
    adv = torch.zeros((b, length - 1), dtype=torch.float32)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        input_ids[i, :n] = torch.tensor(r.input_ids)
        attn[i, :n] = 1
        targets[i, : n - 1] = input_ids[i, 1:n]
        kind[i, : n - 1] = torch.tensor(r.kind)
        old[i, : n - 1] = torch.tensor(r.old_logp)
        adv[i, : n - 1] = r.advantage
    return TokenBatch(input_ids, attn, targets, kind, old, adv)


def micro_batches(rows: list[Row], size: int, pad_id: int) -> list[TokenBatch]:
    """Consecutive groups of `size` rows (the last may be smaller)."""
    return [collate(rows[i : i + size], pad_id) for i in range(0, len(rows), size)]
