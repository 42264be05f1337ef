"""Turn rollouts and expert examples into learner rows, and rows into padded or packed micro-batches.

Position t of a row predicts input_ids[t + 1]; `kind` marks which targets enter which loss:
rollout response tokens (1) enter L_GRPO only, expert response tokens (2) enter L_SFT only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.bin_packing import balance, bins_by_rows, bins_by_tokens
from chord.types import EXPERT, IGNORED, ROLLOUT, ExpertExample, Rollout, TokenBatch


@dataclass
class Row:
    input_ids: list[int]
    kind: list[int]  # len(input_ids) - 1, aligned to targets
    old_logp: list[float]
    advantage: float


def rollout_row(r: Rollout, advantage: float) -> Row:
    ids = r.prompt_ids + r.response_ids
    n_prompt, n_resp = len(r.prompt_ids), len(r.response_ids)
    kind = [IGNORED] * (n_prompt - 1) + [ROLLOUT] * n_resp
    old = [0.0] * (n_prompt - 1) + list(r.sampling_logprobs)
    return Row(ids, kind, old, advantage)


def expert_row(e: ExpertExample) -> Row:
    kind = [EXPERT if m else IGNORED for m in e.loss_mask[1:]]
    return Row(list(e.input_ids), kind, [0.0] * len(kind), 0.0)


def count_tokens(rows: list[Row]) -> tuple[int, int]:
    """(rollout tokens, expert tokens) of the whole step: the two loss denominators."""
    n_r = sum(k == ROLLOUT for row in rows for k in row.kind)
    n_e = sum(k == EXPERT for row in rows for k in row.kind)
    return n_r, n_e


def plan_micro_batches(rows: list[Row], world: int, *, max_tokens: int | None, rows_per_micro: int,
                       packed: bool) -> list[list[list[Row]]]:
    """Per rank, its micro-batches as row lists; every rank gets the same count (empty lists pad).

    Identical on every rank (all ranks hold the step's rows), so it needs no communication.
    max_tokens set: token-budget bins (chord.bin_packing); None: `rows_per_micro` rows per micro-batch.
    """
    lengths = [len(r.input_ids) for r in rows]
    plans = []
    for idx in balance(lengths, world):
        mine = [lengths[i] for i in idx]
        bins = bins_by_tokens(mine, max_tokens, packed) if max_tokens else bins_by_rows(len(idx), rows_per_micro)
        plans.append([[rows[idx[j]] for j in b] for b in bins])
    n = max(1, *(len(p) for p in plans))
    return [p + [[] for _ in range(n - len(p))] for p in plans]


def collate(rows: list[Row], pad_id: int, packed: bool) -> TokenBatch:
    """Rows -> one TokenBatch, right-padded [B, L] or packed [1, sum of lengths]; [] -> a padding batch."""
    rows = rows or [Row([pad_id], [], [], 0.0)]  # one token, nothing to learn: adds exactly zero
    lens = [len(r.input_ids) for r in rows]
    b, length = (1, sum(lens)) if packed else (len(rows), max(lens))
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    targets = torch.full((b, length), pad_id, dtype=torch.long)
    kind = torch.full((b, length), IGNORED, dtype=torch.long)
    old = torch.zeros((b, length), dtype=torch.float32)
    adv = torch.zeros((b, length), dtype=torch.float32)
    start = 0
    for i, (r, n) in enumerate(zip(rows, lens)):
        at, s = (0, start) if packed else (i, 0)  # (batch row, first position) of this row
        ids = torch.tensor(r.input_ids)
        input_ids[at, s : s + n] = ids
        targets[at, s : s + n - 1] = ids[1:]
        kind[at, s : s + n - 1] = torch.tensor(r.kind, dtype=torch.long)
        old[at, s : s + n - 1] = torch.tensor(r.old_logp, dtype=torch.float32)
        adv[at, s : s + n - 1] = r.advantage
        start += n
    scored = kind != IGNORED
    if not scored.any():
        scored[0, 0] = True  # kind IGNORED there: the loss and its gradient are exactly zero
    if packed:
        cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
        pos = torch.cat([torch.arange(n) for n in lens]).unsqueeze(0)
        return TokenBatch(input_ids, None, pos, cu, targets, kind, old, adv, scored)
    attn = (torch.arange(length).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)).long()
    return TokenBatch(input_ids, attn, None, None, targets, kind, old, adv, scored)


def micro_batches(rows: list[Row], size: int, pad_id: int, packed: bool = False) -> list[TokenBatch]:
    """Consecutive groups of `size` rows (the last may be smaller), in row order: tests and tools."""
    return [collate([rows[i] for i in b], pad_id, packed) for b in bins_by_rows(len(rows), size)]
