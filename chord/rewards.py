"""Reward registry: built-in verifiers by name, or any `package.module:function` from the recipe.

A reward function takes (response_text, ground_truth) and returns (score, info) where info maps
component names to floats (logged as reward/<name>). Model output is hostile input: rewards parse
it, never eval/exec it; an exception scores 0 and is counted, it never crashes the step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

RewardFn = Callable[[str, str], tuple[float, dict[str, float]]]


def _tiny(response: str, answer: str) -> tuple[float, dict[str, float]]:
    from chord.data.tiny_task import tiny_reward

    return tiny_reward(response, answer)


def _math() -> RewardFn:
    from chord.rewards_math import math_reward  # sympy-backed, process-isolated, time-limited

    return math_reward


BUILTIN: dict[str, RewardFn] = {"tiny": _tiny}
LAZY_BUILTIN: dict[str, Callable[[], RewardFn]] = {"math": _math}


class RewardError(ValueError):
    """A reward reference that cannot be resolved (raised at start-up)."""


def resolve_reward(name: str) -> RewardFn:
    """A built-in name or "package.module:function"; fails at start-up with a one-line message."""
    if name in BUILTIN:
        return BUILTIN[name]
    if name in LAZY_BUILTIN:
        return LAZY_BUILTIN[name]()
    if ":" not in name:
        raise RewardError(f"unknown reward '{name}': use one of {sorted(BUILTIN | LAZY_BUILTIN)} "
                          "or 'package.module:function'")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RewardError(f"reward '{name}': cannot import module '{module_name}' ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RewardError(f"reward '{name}': '{module_name}' has no callable '{attr}'")
    return fn


@dataclass
class Scores:
    rewards: list[float]
    info: list[dict[str, float]]
    errors: int = 0  # responses whose scoring raised; they score 0
    error_examples: list[str] = field(default_factory=list)


def score_all(fn: RewardFn, responses: Sequence[str], answers: Sequence[str]) -> Scores:
    """Score every response; a raising reward gives 0 and is counted, never aborts the step.

    A reward with a `score_batch(responses, answers)` method (e.g. the math reward, which verifies
    in parallel worker processes under a deadline) scores the whole batch in one call.
    """
    out = Scores([], [])
    if callable(getattr(fn, "score_batch", None)):
        try:
            for r, info in fn.score_batch(responses, answers):
                out.rewards.append(float(r))
                out.info.append(info)
            return out
        except Exception as e:  # a broken batch scorer: fall back to per-sample scoring and counting
            out = Scores([], [], error_examples=[f"score_batch: {type(e).__name__}: {e}"[:200]])
    for text, ans in zip(responses, answers, strict=True):
        try:
            r, info = fn(text, ans)
            r = float(r)
        except Exception as e:  # model output is hostile input: count, don't crash
            r, info = 0.0, {}
            out.errors += 1
            if len(out.error_examples) < 3:
                out.error_examples.append(f"{type(e).__name__}: {e}"[:200])
        out.rewards.append(r)
        out.info.append(info)
    return out
