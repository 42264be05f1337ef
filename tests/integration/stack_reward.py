"""A reward for tests/integration/test_stack.py: the tiny task's reward, and a check that the row's other columns
(verl's data_source and extra_info) arrive as extra_info. A missing one raises: the step counts it in reward/errors."""

from __future__ import annotations

from typing import Any

from chord.tasks.tiny import tiny_reward


def reward(response: str, answer: str, extra_info: dict[str, Any] | None = None) -> tuple[float, dict[str, float]]:
    extra = extra_info or {}
    if extra.get("data_source") != "tiny_verl" or "index" not in extra.get("extra_info", {}):
        raise ValueError(f"extra_info did not carry the row's columns: {extra_info!r}")
    return tiny_reward(response, answer)
