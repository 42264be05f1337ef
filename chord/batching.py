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
    scale: float = 1.0  # factor of this row's token losses: its term's aggregation mode (aggregation_scales)


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


AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")  # algorithm.loss_agg_mode (verl's names)


def aggregation_scales(rows: list[Row], grpo_mode: str, sft_mode: str) -> None:
    """Set each row's `scale` so that a term's loss, sum(scale * l_t) / (its tokens in the step), is its mode
    (docs/algorithm.md#loss-aggregation), over the whole step as the token means are (so micro-batching and
    ranks still leave the gradient unchanged):

    * token-mean: every token of the step weighs the same (scale 1);
    * seq-mean-token-mean: each row's token mean, then the mean over rows (scale n / (N L_i));
    * seq-mean-token-sum: each row's token sum, then the mean over rows (scale n / N);

    with n the term's tokens in the step, N its rows that hold any, L_i row i's tokens of that kind.
    """
    for kind, mode in ((ROLLOUT, grpo_mode), (EXPERT, sft_mode)):
        if mode not in AGG_MODES:
            raise ValueError(f"loss aggregation must be one of {AGG_MODES}, got {mode!r}")
        lengths = {i: sum(k == kind for k in row.kind) for i, row in enumerate(rows)}
        lengths = {i: n for i, n in lengths.items() if n}
        n_tok, n_rows = sum(lengths.values()), len(lengths)
        for i, length in lengths.items():
            rows[i].scale = (1.0 if mode == "token-mean" else
                             n_tok / (n_rows * length) if mode == "seq-mean-token-mean" else n_tok / n_rows)


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
    scaled = any(r.scale != 1.0 for r in rows)  # token-mean everywhere: no tensor, the loss multiplies by nothing
    scale = torch.ones((b, length), dtype=torch.float32) if scaled else None
    start = 0
    for i, (r, n) in enumerate(zip(rows, lens)):
        at, s = (0, start) if packed else (i, 0)  # (batch row, first position) of this row
        ids = torch.tensor(r.input_ids)
        input_ids[at, s : s + n] = ids
        targets[at, s : s + n - 1] = ids[1:]
        kind[at, s : s + n - 1] = torch.tensor(r.kind, dtype=torch.long)
        old[at, s : s + n - 1] = torch.tensor(r.old_logp, dtype=torch.float32)
        adv[at, s : s + n - 1] = r.advantage
        if scale is not None:
            scale[at, s : s + n - 1] = r.scale
        start += n
    scored = kind != IGNORED
    if not scored.any():
        scored[0, 0] = True  # kind IGNORED there: the loss and its gradient are exactly zero
    if packed:
        cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
        pos = torch.cat([torch.arange(n) for n in lens]).unsqueeze(0)
        return TokenBatch(input_ids, None, pos, cu, targets, kind, old, adv, scored, scale)
    attn = (torch.arange(length).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)).long()
    return TokenBatch(input_ids, attn, None, None, targets, kind, old, adv, scored, scale)


def micro_batches(rows: list[Row], size: int, pad_id: int, packed: bool = False) -> list[TokenBatch]:
    """Consecutive groups of `size` rows (the last may be smaller), in row order: tests and tools."""
    return [collate([rows[i] for i in b], pad_id, packed) for b in bins_by_rows(len(rows), size)]
