"""Evaluation metrics over k samples per problem: avg@k and the unbiased pass@k estimator.

pass@k (Chen et al. 2021, the HumanEval paper): with n samples of which c are correct,
    pass@k = 1 - C(n - c, k) / C(n, k),
the probability that k samples drawn without replacement from the n contain a correct one.
Computed as a running product, never with factorials, so n in the thousands is exact and cheap.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples, c of them correct (requires k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    fail = 1.0  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def summarize(correct: Sequence[Sequence[bool]], k: int) -> dict[str, float]:
    """avg@k (mean accuracy over all samples) and mean pass@k over problems, each with n >= k samples."""
    if not correct:
        raise ValueError("no problems to summarize")
    per_problem = [pass_at_k(len(s), sum(map(bool, s)), k) for s in correct]
    samples = [bool(x) for s in correct for x in s]
    return {f"avg@{k}": sum(samples) / len(samples), f"pass@{k}": sum(per_problem) / len(per_problem)}
