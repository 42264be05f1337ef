"""Statistics over seeds: mean with a 95% confidence interval, and the CI of a difference of two methods.

With n seeds the interval is mean +- t_{0.975, n-1} * sd / sqrt(n) (Student t, sd with n - 1); a difference
of two methods uses Welch's standard error and Welch-Satterthwaite degrees of freedom. Three seeds give
t = 4.30: the intervals are wide on purpose, a "win" has to survive them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (df > 30: the normal 1.96 is within 4%)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: float) -> float:
    """t_{0.975, df}; fractional df (Welch) rounds down, which widens the interval (conservative)."""
    if df < 1:
        return math.inf
    d = int(math.floor(df))
    return _T975[d - 1] if d <= len(_T975) else 1.96


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half: float  # half-width of the 95% interval; inf with one value
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """'61.3 ± 4.2' (percent points by default); one value: '61.3' (no interval)."""
        if self.n == 0:
            return "—"
        m = f"{scale * self.mean:.{digits}f}"
        return m if self.n == 1 else f"{m} ± {scale * self.half:.{digits}f}"


def _var(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def mean_ci(values: Sequence[float]) -> MeanCI:
    """Mean and 95% Student-t half-width over seeds (inf for a single value)."""
    xs = [float(v) for v in values]
    if not xs:
        return MeanCI(math.nan, math.inf, 0)
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return MeanCI(mean, math.inf, 1)
    return MeanCI(mean, t975(len(xs) - 1) * math.sqrt(_var(xs) / len(xs)), len(xs))


def diff_ci(a: Sequence[float], b: Sequence[float]) -> MeanCI:
    """mean(a) - mean(b) with a Welch 95% interval (independent seeds); n = min(len(a), len(b))."""
    if len(a) < 2 or len(b) < 2:
        return MeanCI(mean_ci(a).mean - mean_ci(b).mean, math.inf, min(len(a), len(b)))
    va, vb = _var(a) / len(a), _var(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return MeanCI(mean_ci(a).mean - mean_ci(b).mean, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return MeanCI(mean_ci(a).mean - mean_ci(b).mean, t975(df) * se, min(len(a), len(b)))


def verdict(d: MeanCI, a: str, b: str, what: str) -> str:
    """One honest sentence on a difference in percent points."""
    span = f"{100 * d.mean:+.1f} points, 95% CI [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    if d.n < 2:
        return f"{a} vs {b} on {what}: {100 * d.mean:+.1f} points from one seed: no interval, no claim."
    if d.low > 0:
        return f"{a} beats {b} on {what} ({span})."
    if d.high < 0:
        return f"{a} trails {b} on {what} ({span})."
    return f"{a} vs {b} on {what} is inside the noise ({span})."
