"""DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13), for any reward: reward.overlong_buffer."""

from __future__ import annotations

from collections.abc import Sequence

from chord.rewards import is_correct
from chord.types import Rollout


def overlong_penalty(length: int, max_new_tokens: int, buffer: int, penalty: float) -> float:
    """0 up to max_new_tokens - buffer tokens, then linearly down to -penalty at max_new_tokens.

    DAPO writes it for lengths past the cap too (-1 there); a rollout never exceeds rollout.max_new_tokens, so the
    cap itself is the worst case. buffer 0: off.
    """
    if buffer <= 0:
        return 0.0
    past = min(max(length - (max_new_tokens - buffer), 0), buffer)
    return -penalty * past / buffer


def apply_overlong_penalty(rollouts: Sequence[Rollout], max_new_tokens: int, buffer: int, penalty: float) -> None:
    """Add the penalty to each scored rollout's reward, logged as reward/overlong_buffer. Whether the answer
    was right is fixed first (info `correct`), so a penalised right answer still counts as solved."""
    if buffer <= 0:
        return
    for r in rollouts:
        p = overlong_penalty(len(r.response_ids), max_new_tokens, buffer, penalty)
        r.reward_info = {"correct": float(is_correct(r.reward, r.reward_info)), **r.reward_info, "overlong_buffer": p}
        r.reward += p
