"""Reward registry: built-in verifiers by name, or any `package.module:function` from the recipe.

A reward function takes (response_text, ground_truth) and returns (score, info) where info maps
component names to floats (logged as reward/<name>); one that also accepts a `truncated` keyword
(the response hit the token limit) receives it, for over-length penalties, and one that accepts an
`extra_info` keyword (verl's name; or **kwargs) receives the prompt row's other columns as a dict
(PromptExample.extra, data.prompts.extra_columns), e.g. a per-row tolerance:

    def reward(response: str, ground_truth: str, *, extra_info: dict) -> tuple[float, dict[str, float]]:
        ...abs(float(x) - float(ground_truth)) <= extra_info["tolerance"]...

A `score_batch(responses, answers[, truncated=...][, extra_info=...])` method gets the same keywords as
lists, one entry per response. Rewards that accept neither keyword are called as (response, answer).
An info key `correct` (0/1) is what evaluation counts as solved; without it a reward >= 1 counts as
solved. Model output is hostile input: rewards parse it, never eval/exec it; an exception scores 0
and is counted, it never crashes the step.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chord.config import RewardConfig
from chord.logger import say

RewardFn = Callable[[str, str], tuple[float, dict[str, float]]]


def _tiny(response: str, answer: str) -> tuple[float, dict[str, float]]:
    from chord.tasks.tiny import tiny_reward

    return tiny_reward(response, answer)


def _points24(response: str, answer: str) -> tuple[float, dict[str, float]]:
    from chord.tasks.points24_verifier import points24_reward  # 24-point game: safe parser, exact Fractions

    return points24_reward(response, answer)


def _math() -> RewardFn:
    from chord.rewards.math_verifier import math_reward  # sympy-backed, process-isolated, time-limited

    return math_reward


BUILTIN: dict[str, RewardFn] = {"tiny": _tiny, "cards": _tiny, "points24": _points24}  # cards: `Answer: N` too
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
    except SyntaxError as e:  # its message alone lacks the place
        raise RewardError(f"reward '{name}': module '{module_name}' does not compile: {e.msg} "
                          f"({e.filename}, line {e.lineno})") from None
    except Exception as e:  # the module's own top-level code raised: a broken module, not a crash of ours
        first = (str(e).splitlines() or [""])[0]
        raise RewardError(f"reward '{name}': importing '{module_name}' raised {type(e).__name__}: {first}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RewardError(f"reward '{name}': '{module_name}' has no callable '{attr}'")
    return fn


def build_reward(cfg: RewardConfig) -> RewardFn:
    """The recipe's reward: `math` takes the reward.* options; other rewards warn if they are set."""
    if cfg.name == "math":
        from chord.rewards.math_verifier import MathReward

        return MathReward(format_penalty=cfg.format_penalty, overlong_penalty=cfg.overlong_penalty,
                          timeout_s=cfg.timeout_s, fallback=cfg.fallback, workers=cfg.workers or None)
    defaults = RewardConfig()
    unused = [f"reward.{k}" for k in ("format_penalty", "overlong_penalty", "timeout_s", "fallback", "workers")
              if getattr(cfg, k) != getattr(defaults, k)]
    if unused:
        say(f"warning: {', '.join(unused)} only apply to reward.name=math; ignored for '{cfg.name}'")
    return resolve_reward(cfg.name)


def is_correct(reward: float, info: dict[str, float]) -> bool:
    """Solved: the `correct` component is 1, else the reward is >= 1 (penalties never count)."""
    return float(info.get("correct", reward)) >= 1.0


def _takes(fn: Callable, keyword: str) -> bool:
    """fn accepts `keyword` by name (or **kwargs): it is passed only to rewards that can take it."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass
class Scores:
    rewards: list[float]
    info: list[dict[str, float]]
    errors: int = 0  # responses whose scoring raised; they score 0
    error_examples: list[str] = field(default_factory=list)


def _keywords(fn: Callable, given: dict[str, list | None]) -> dict[str, list]:
    """The optional per-response keywords (truncated, extra_info) that were given and that fn accepts."""
    return {k: v for k, v in given.items() if v is not None and _takes(fn, k)}


def score_all(fn: RewardFn, responses: Sequence[str], answers: Sequence[str],
              truncated: Sequence[bool] | None = None, extra_info: Sequence[dict] | None = None) -> Scores:
    """Score every response; a raising reward gives 0 and is counted, never aborts the step.

    A reward with a `score_batch(responses, answers)` method (e.g. the math reward, which verifies
    in parallel worker processes under a deadline) scores the whole batch in one call. `truncated`
    and `extra_info` (one dict per response: its prompt row's other columns) reach rewards whose
    signature accepts them.
    """
    out = Scores([], [])
    flags = list(truncated) if truncated is not None else [False] * len(responses)
    extras = list(extra_info) if extra_info is not None else None
    if extras is not None and len(extras) != len(responses):
        raise ValueError(f"score_all: {len(extras)} extra_info dicts for {len(responses)} responses")
    given = {"truncated": flags if truncated is not None else None, "extra_info": extras}
    batch = getattr(fn, "score_batch", None)
    if callable(batch):
        try:
            for r, info in batch(responses, answers, **_keywords(batch, given)):
                out.rewards.append(float(r))
                out.info.append(info)
            return out
        except Exception as e:  # a broken batch scorer: fall back to per-sample scoring and counting
            out = Scores([], [], error_examples=[f"score_batch: {type(e).__name__}: {e}"[:200]])
    keywords = _keywords(fn, given)
    for i, (text, ans) in enumerate(zip(responses, answers, strict=True)):
        try:
            r, info = fn(text, ans, **{k: v[i] for k, v in keywords.items()})
            r = float(r)
        except Exception as e:  # model output is hostile input: count, don't crash
            r, info = 0.0, {}
            out.errors += 1
            if len(out.error_examples) < 3:
                out.error_examples.append(f"{type(e).__name__}: {e}"[:200])
        out.rewards.append(r)
        out.info.append(info)
    return out
