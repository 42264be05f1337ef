"""Exploration metrics of sampled responses: the pass@k curve, distinct-n, and GRPO groups with no signal.

    from chord.evaluation.exploration import pass_at_k_curve, distinct_n, all_equal_fraction
    pass_at_k_curve([[True, False, False, False], [False] * 4])  # [0.125, 0.25, 0.375, 0.5]

A policy that explores keeps pass@k rising with k (some sample solves what the mean does not); one that
collapses has pass@K close to pass@1. distinct-n measures how different the K responses to one prompt are;
the all-equal fraction is the share of GRPO groups whose advantages are all zero (every reward equal).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from chord.evaluation.metrics import pass_at_k


def pass_at_k_curve(correct: Sequence[Sequence[bool]], max_k: int | None = None) -> list[float]:
    """Mean over problems of the unbiased pass@k (chord.evaluation.metrics.pass_at_k), for k = 1 .. max_k.

    max_k defaults to the fewest samples any problem has; a larger one raises ValueError, since the estimator
    1 - C(n-c, k) / C(n, k) needs k <= n (fewer samples cannot say what k of them would do).
    """
    if not correct:
        raise ValueError("pass_at_k_curve needs >= 1 problem")
    fewest = min(len(s) for s in correct)
    max_k = fewest if max_k is None else max_k
    if not 1 <= max_k <= fewest:
        raise ValueError(
            f"pass@k needs 1 <= k <= n samples per problem; got k = {max_k}, fewest n = {fewest}"
        )
    counts = [(len(s), sum(map(bool, s))) for s in correct]
    return [sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in range(1, max_k + 1)]


def _tokens(sample: str | Sequence[Hashable]) -> Sequence[Hashable]:
    return sample.split() if isinstance(sample, str) else sample  # text: whitespace words (Li et al. 2016)


def distinct_n(samples: Sequence[str | Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams / all n-grams over the K samples of one prompt (token ids, or text as words).

    1.0 when no n-gram repeats; K identical samples without inner repeats give 1 / K. Samples shorter than n
    add no n-gram; 0.0 when there is none at all (nothing to tell apart).
    """
    if n < 1:
        raise ValueError(f"distinct_n needs n >= 1, got {n}")
    grams = [tuple(t[i : i + n]) for t in map(_tokens, samples) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_distinct_n(groups: Sequence[Sequence[str | Sequence[Hashable]]], n: int) -> float:
    """distinct_n averaged over prompts (each prompt's K samples form one group)."""
    if not groups:
        raise ValueError("mean_distinct_n needs >= 1 group")
    return sum(distinct_n(g, n) for g in groups) / len(groups)


def all_equal_fraction(rewards: Sequence[Sequence[float]]) -> float:
    """Share of prompt groups whose rewards are all equal: their GRPO advantages (r - mean) / (std + eps) are 0.

    Exact equality, as chord.algo.advantage sees it: any difference gives a nonzero advantage. Groups need
    >= 2 rewards: chord gives a group of one A = R / (1 + eps), a signal without a comparison.
    """
    if not rewards or any(len(g) < 2 for g in rewards):
        raise ValueError("all_equal_fraction needs >= 1 group, each with >= 2 rewards")
    return sum(all(r == g[0] for r in g) for g in rewards) / len(rewards)
